"""Fixtures of the Kubernetes smoke suite (pytest-testinfra's kubectl backend).

`chiml smoke` on the kubernetes/chameleon profile sets CHIML_KUBE_NAMESPACE and KUBECONFIG.
The suite is skipped, not failed, when no cluster answers (e.g. in CI without one).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import testinfra

NAMESPACE = os.environ.get("CHIML_KUBE_NAMESPACE", "chiml")


def _kubectl_binary() -> str:
    from chiml.tools import ToolError, find_tool

    try:
        return find_tool("kubectl")
    except ToolError:
        found = shutil.which("kubectl")
        if found is None:
            pytest.skip("kubectl not found: run `make tools`")
        return found


@pytest.fixture(scope="session")
def namespace() -> str:
    return NAMESPACE


@pytest.fixture(scope="session")
def kubectl() -> Callable[..., Any]:
    binary = _kubectl_binary()
    probe = subprocess.run([binary, "get", "--raw", "/readyz"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no cluster reachable with the current kubeconfig: {probe.stderr.strip()}")

    def run(*args: str, input: str | None = None, parse: bool = True) -> Any:
        proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=300, input=input)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr.strip()}"
        return json.loads(proc.stdout) if parse else proc.stdout

    return run


@pytest.fixture(scope="session")
def pod_host(kubectl, namespace) -> Callable[[str], Any]:
    """A testinfra host for the first Ready pod matching a label selector."""

    def get(selector: str, ns: str | None = None) -> Any:
        ns = ns or namespace
        pods = kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json")["items"]
        ready = [
            p for p in pods
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]
        assert ready, f"no Ready pod for {selector} in {ns}"
        pod = ready[0]["metadata"]["name"]
        container = ready[0]["spec"]["containers"][0]["name"]
        return testinfra.get_host(f"kubectl://{pod}?namespace={ns}&container={container}")

    return get
