"""The kubernetes profile: dry run through the real CLI, and status/secrets/URIs after an install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chiml.cluster import ClusterDescription
from chiml.errors import ChimlError, NotSupportedError
from chiml.kube.discovery import default_ingress_base_url, describe_cluster
from chiml.kube.installer import install_platform
from chiml.profiles import get_profile

REPO = Path(__file__).resolve().parents[2]


def test_cli_dry_run_prints_releases_without_a_cluster(tmp_path: Path):
    config = tmp_path / "chiml.yaml"
    config.write_text(yaml.safe_dump({"profile": "local", "kubernetes": {"namespace": "ml"}}))
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "missing-kubeconfig"), "COLUMNS": "250",
           "CHIML_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "chiml.cli.main", "--config", str(config), "up", "--profile", "kubernetes", "--dry-run"],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for expected in ("cert-manager", "v1.19.1", "helm/values/mlflow.yaml", "kserve-resources", "v0.20.0",
                     "chiml-runtimes", "GPU nodes only"):
        assert expected in proc.stdout, expected
    assert " ml " in proc.stdout  # the configured namespace replaces ${namespace}
    assert not (tmp_path / "home" / "state.json").exists()


def test_status_secrets_and_uris_after_install(loaded, cluster, fake_helm, kube_api):
    profile = get_profile(loaded)
    assert profile.name == "kubernetes"
    profile._api = kube_api
    before = profile.status()
    assert len(before) == 1 and not before[0].healthy and "not installed" in before[0].detail
    with pytest.raises(ChimlError, match="not installed"):
        profile.tracking_uri()
    install_platform(loaded, cluster, api=kube_api)
    # the cluster's pods, as the API reports them
    kube_api.core.add_pod("chiml", "mlflow-1", {"app.kubernetes.io/instance": "mlflow"}, ready=True)
    kube_api.core.add_pod("chiml", "tb-1", {"app.kubernetes.io/instance": "tensorboard"}, ready=False)
    by_name = {s.name: s for s in profile.status()}
    assert by_name["mlflow"].healthy and by_name["mlflow"].url == "http://mlflow.203.0.113.7.nip.io"
    assert not by_name["tensorboard"].healthy and by_name["tensorboard"].detail.startswith("0/1 pods ready")
    assert by_name["optuna-dashboard"].url == "http://optuna.203.0.113.7.nip.io"
    assert by_name["jupyterlab"].url == "http://jupyterlab.203.0.113.7.nip.io"  # the chart's ingress host
    assert not by_name["kserve"].healthy  # no controller pod reported
    secrets = profile.secrets()
    assert secrets["ui_username"] == "chiml" and len(secrets["ui_password"]) == 24
    assert len(secrets["inference_token"]) == 40 and secrets["s3_access_key_id"]
    assert len(secrets["jupyterlab_token"]) == 48
    before = dict(os.environ)
    assert profile.tracking_uri() == "http://mlflow.203.0.113.7.nip.io"
    assert profile.tracking_credentials() == {
        "MLFLOW_TRACKING_USERNAME": "chiml", "MLFLOW_TRACKING_PASSWORD": secrets["ui_password"],
    }
    assert dict(os.environ) == before  # asking where MLflow is changes nothing
    # Optuna logs in with its own role, whose password `up` generated (never the superuser)
    optuna = kube_api.read_secret("chiml", "chiml-pg-optuna")
    assert optuna["username"] == "optuna" and secrets["postgres_optuna_password"] == optuna["password"]
    # the laptop is never handed the in-cluster database (its workers get it in their pods)
    with pytest.raises(NotSupportedError, match="reachable inside the cluster only") as refused:
        profile.optuna_storage()
    assert ".svc" not in str(refused.value) and optuna["password"] not in str(refused.value)
    assert "http://optuna.203.0.113.7.nip.io" in (refused.value.hint or "")
    assert profile.tensorboard_logdir() == "s3://chiml-artifacts/tensorboard"
    endpoints = profile.endpoints()
    assert endpoints.namespace == "chiml" and endpoints.ingress_domain == "203.0.113.7.nip.io"
    paths, env = profile.smoke_args()
    assert paths == [str(REPO / "smoke_tests" / "kube")] and env["CHIML_KUBE_NAMESPACE"] == "chiml"


def test_describe_cluster_from_the_api(kube_api, loaded):
    kube_api.core.add_node("cpu-0")
    kube_api.core.add_node("gpu-0", gpus=2)
    kube_api.core.add_node("gpu-1", labels={"feature.node.kubernetes.io/pci-10de.present": "true"})

    class Version:
        def get_code(self):
            return type("Info", (), {"git_version": "v1.33.5+k3s1"})()

    kube_api.version = Version()
    cluster = describe_cluster(kube_api, loaded.config.kubernetes)
    assert isinstance(cluster, ClusterDescription)
    assert [n.gpu for n in cluster.nodes] == [False, True, True] and cluster.has_gpu
    assert cluster.kubernetes_version == "v1.33.5+k3s1"
    assert cluster.ingress_base_url == "http://203.0.113.7.nip.io"
    assert cluster.storage_class == "local-path"
    assert default_ingress_base_url("https://127.0.0.1:6443") is None
    assert default_ingress_base_url("https://k8s.example.org:6443") is None
