"""Fixtures for the Kubernetes layer: a fake helm executable and fake Kubernetes API objects."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from chiml.cluster import ClusterDescription, NodeInfo
from chiml.config import LoadedConfig, load_config
from chiml.kube.kubeapi import KubeApi
from chiml.kube.values import RenderContext

from .fake_kube import ControllerSimulatingCustomApi, FakeCoreV1Api

REPO = Path(__file__).resolve().parents[2]
HELM_DIR = REPO / "helm"
FAKE_HELM = Path(__file__).with_name("fake_helm.py")


@dataclass
class FakeHelm:
    path: Path
    state_file: Path

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {"releases": {}, "calls": []}

    @property
    def calls(self) -> list[list[str]]:
        return self.state()["calls"]

    def upgrades(self) -> list[list[str]]:
        return [c for c in self.calls if c and c[0] == "upgrade"]

    def installed(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.state()["releases"].values()}

    def clear_calls(self) -> None:
        doc = self.state()
        doc["calls"] = []
        self.state_file.write_text(json.dumps(doc))


@pytest.fixture
def fake_helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHelm:
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    exe = bindir / "helm"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_HELM}" "$@"\n')
    exe.chmod(0o755)
    state = tmp_path / "fake-helm-state.json"
    monkeypatch.setenv("FAKE_HELM_STATE", str(state))
    monkeypatch.setenv("CHIML_HELM", str(exe))
    for var in ("FAKE_HELM_FAIL", "FAKE_HELM_FAIL_ONCE", "FAKE_HELM_FAIL_UNINSTALL", "FAKE_HELM_MISSING_CHART"):
        monkeypatch.delenv(var, raising=False)
    return FakeHelm(exe, state)


@pytest.fixture
def kube_api() -> KubeApi:
    # the fake KServe controller writes the URLs helm/values/kserve-resources.yaml gives this cluster
    custom = ControllerSimulatingCustomApi(context=RenderContext.for_cluster(make_cluster(), "chiml"))
    return KubeApi(core=FakeCoreV1Api(), custom=custom, host="https://203.0.113.7:6443",
                   kubeconfig="/nonexistent/kubeconfig")


@pytest.fixture
def helm_dir(tmp_path: Path) -> Path:
    """A private copy of helm/ that a test may edit."""
    target = tmp_path / "helm"
    shutil.copytree(HELM_DIR, target)
    return target


def make_loaded(tmp_path: Path, helm_dir: Path, monkeypatch: pytest.MonkeyPatch, **kube: Any) -> LoadedConfig:
    monkeypatch.delenv("CHIML_HOME", raising=False)
    config = tmp_path / "chiml.yaml"
    config.write_text(yaml.safe_dump({"profile": "kubernetes", "kubernetes": {"helm_dir": str(helm_dir), **kube}}))
    return load_config(config)


@pytest.fixture
def loaded(tmp_path: Path, helm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> LoadedConfig:
    return make_loaded(tmp_path, helm_dir, monkeypatch)


def make_cluster(gpu: bool = False) -> ClusterDescription:
    return ClusterDescription(
        kubeconfig="/nonexistent/kubeconfig",
        api_endpoint="https://203.0.113.7:6443",
        kubernetes_version="v1.33.5+k3s1",
        nodes=[NodeInfo("node-0", gpu=False), *([NodeInfo("gpu-0", gpu=True)] if gpu else [])],
        storage_class="local-path",
        ingress_base_url="http://203.0.113.7.nip.io",
    )


@pytest.fixture
def cluster() -> ClusterDescription:
    return make_cluster()
