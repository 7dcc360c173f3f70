"""The Kubernetes API wrapper: kubeconfig errors and unreachable clusters are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from urllib3.exceptions import MaxRetryError, NewConnectionError

from chiml.errors import ChimlError, InvalidInputError, UnreachableError
from chiml.kube.kubeapi import KubeApi

from .fake_kube import FakeCoreV1Api, FakeCustomObjectsApi


def test_missing_or_broken_kubeconfig(tmp_path: Path):
    with pytest.raises(InvalidInputError, match="kubeconfig not found"):
        KubeApi.from_kubeconfig(str(tmp_path / "nope"))
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    with pytest.raises(InvalidInputError, match="cannot use kubeconfig"):
        KubeApi.from_kubeconfig(str(broken))


def test_real_client_against_an_unreachable_server(tmp_path: Path):
    """The real kubernetes client (no fake): a closed port gives one line, no traceback."""
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:9'}\n"
        "contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n"
    )
    api = KubeApi.from_kubeconfig(str(config))
    api.core.api_client.configuration.retries = 0
    with pytest.raises(ChimlError) as caught:
        api.read_secret("chiml", "x")
    assert "cannot reach the Kubernetes API at https://127.0.0.1:9" in caught.value.message
    assert "\n" not in caught.value.message


class Unreachable(FakeCoreV1Api):
    def list_node(self):
        raise MaxRetryError(None, "/api/v1/nodes", NewConnectionError(None, "Connection refused"))


def test_api_errors_keep_the_servers_message():
    api = KubeApi(core=Unreachable(), custom=FakeCustomObjectsApi(), host="https://10.0.0.1:6443")
    with pytest.raises(UnreachableError, match=r"list nodes: cannot reach the Kubernetes API at https://10\.0\.0\.1:6443"):
        api.nodes()
    api = KubeApi(core=FakeCoreV1Api(), custom=FakeCustomObjectsApi())
    with pytest.raises(ChimlError, match='namespaces "ghost" not found'):
        api.create_secret("ghost", "s", {"k": "v"})
    api.ensure_namespace("ns")
    api.ensure_namespace("ns")  # idempotent (409 from the server is fine)
    assert api.create_secret("ns", "s", {"k": "v"}) is True
    assert api.create_secret("ns", "s", {"k": "other"}) is False  # never overwritten
    assert api.read_secret("ns", "s") == {"k": "v"}
