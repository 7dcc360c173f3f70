"""A cluster profile's site against the fake Kubernetes API: the namespace and the Secrets `chiml up`
creates, nodes like the Terraform modules label them, and the in-cluster addresses read from helm/."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
import pytest
from kubernetes.client import V1Namespace, V1ObjectMeta

from chiml.kube import incluster
from chiml.kube.jobapi import JobApi
from chiml.kube.kubeapi import KubeApi
from chiml.kube.secrets import ensure_platform_secrets
from chiml.lifecycle import storage as storage_module
from chiml.lifecycle.cluster import ClusterSite
from tests.kube.fake_kube import FakeBatchV1Api, FakeCoreV1Api, PodScript
from tests.kube.test_jobs import terraform_gpu_labels

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / "helm"
NAMESPACE = "chiml"


def service_routes(tracking_uri: str, **extra: str) -> dict[str, str]:
    """The fake cluster's DNS: the in-cluster MLflow Service answers at the test's MLflow server."""
    local = urlsplit(tracking_uri)
    in_cluster = urlsplit(incluster.mlflow_uri(HELM, NAMESPACE))
    return {in_cluster.netloc: local.netloc, **extra}


class Cluster:
    """The fake API server with the platform's namespace and Secrets, and the site chiml uses."""

    def __init__(self, script: PodScript, gpu_nodes: int = 0, services: dict[str, str] | None = None,
                 grace_s: float = 20.0) -> None:
        self.core = FakeCoreV1Api()
        self.core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=NAMESPACE)))
        ensure_platform_secrets(KubeApi(core=self.core, custom=None), NAMESPACE)
        self.core.add_node("node-0", labels={"chiml.io/role": "agent"})
        for i in range(gpu_nodes):
            self.core.add_node(f"gpu-{i}", labels=terraform_gpu_labels(), gpus=1)
        self.batch = FakeBatchV1Api(self.core, script, services=services, grace_s=grace_s)
        self.api = JobApi(core=self.core, batch=self.batch, host="https://203.0.113.7:6443")
        self.site = ClusterSite(
            api=self.api,
            namespace=NAMESPACE,
            mlflow_uri=incluster.mlflow_uri(HELM, NAMESPACE),
            logs=incluster.tensorboard_logs(HELM, NAMESPACE),
            optuna=incluster.optuna_database(HELM, NAMESPACE),
            helm_dir=HELM,
        )

    def set_secret(self, name: str, data: dict[str, str]) -> None:
        """Replace a platform Secret (e.g. with the credentials of the test's own database)."""
        kube = KubeApi(core=self.core, custom=None)
        kube.delete_secret(NAMESPACE, name)
        kube.create_secret(NAMESPACE, name, data)

    def assert_nothing_left(self) -> None:
        assert self.batch.jobs == {}
        assert self.core.job_pods == {}
        assert self.core.config_maps == {}


@contextlib.contextmanager
def on_the_laptop() -> Iterator[list[str]]:
    """Record (and fail) any attempt of this process, the laptop, to resolve an in-cluster name, open
    the Optuna storage or write to an s3:// URL as a local folder; the caller asserts the list is empty."""
    attempts: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and (host.endswith(".svc") or ".svc." in host or host.endswith(f".{NAMESPACE}")):
            attempts.append(host)
            raise AssertionError(f"the laptop tried to reach the in-cluster address {host}")
        return real(host, *args, **kwargs)

    def no_storage(*args: Any, **kwargs: Any) -> Any:
        attempts.append("optuna storage")
        raise AssertionError("the laptop opened the Optuna storage")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        patch.setattr(storage_module, "open_storage", no_storage)
        patch.setattr(optuna.storages.RDBStorage, "__init__", no_storage)
        yield attempts
    # an s3:// log root handed to Path() becomes the local folder ./s3:/bucket/...
    if Path("s3:").exists():
        attempts.append(f"{Path('s3:').resolve()} (an s3:// URL used as a local path)")
