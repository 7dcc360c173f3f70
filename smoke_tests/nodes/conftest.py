"""Fixtures of the node suite: which role each SSH host plays (from `chiml smoke`'s environment).

`chiml smoke` on the chameleon profile runs this folder with
``--hosts=ssh://<server>,ssh://<agent>...`` and ``--ssh-config=<CHIML_HOME>/chameleon/ssh_config``
(agents are reached through the server as jump host), and sets ``CHIML_SMOKE_NODES`` to a JSON
list of ``{"name", "role": "server"|"agent", "gpu": bool}``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest


def _nodes() -> dict[str, dict[str, Any]]:
    raw = os.environ.get("CHIML_SMOKE_NODES")
    if not raw:
        return {}
    return {node["name"]: node for node in json.loads(raw)}


@pytest.fixture(scope="session")
def nodes() -> dict[str, dict[str, Any]]:
    found = _nodes()
    if not found:
        pytest.skip("CHIML_SMOKE_NODES is not set: run through `chiml smoke` on the chameleon profile")
    return found


@pytest.fixture
def node(host, nodes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    name = host.backend.get_hostname()
    if name not in nodes:
        pytest.skip(f"{name} is not a node of this deployment")
    return nodes[name]


@pytest.fixture
def server(node: dict[str, Any]) -> dict[str, Any]:
    if node["role"] != "server":
        pytest.skip("server-only check")
    return node


@pytest.fixture
def gpu_node(node: dict[str, Any]) -> dict[str, Any]:
    if not node["gpu"]:
        pytest.skip("GPU-only check")
    return node
