"""What a pod reaches inside the cluster: MLflow, the Optuna database, the TensorBoard log root.

Every address and Secret name is read from where the Helm layer defines it (helm/releases.yaml,
helm/values/<release>.yaml over our charts' own values.yaml), never written down a second time,
so a changed port or Secret name in a values file reaches the Jobs chiml builds. These
addresses are for pods only: the laptop reaches MLflow through the ingress and never opens
the database or the S3 store itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chiml.kube.releases import Release, ReleaseSet, load_releases
from chiml.kube.values import RenderContext, load_values

# The community MLflow chart's service port when values leave `service.port` unset (chart 1.11.5).
MLFLOW_CHART_DEFAULT_PORT = 5000


@dataclass(frozen=True)
class SecretKey:
    """One key of a Secret, as an env var's ``secretKeyRef`` names it."""

    secret: str
    key: str


@dataclass(frozen=True)
class OptunaDatabase:
    """The Optuna storage: a PostgreSQL database whose role's credentials sit in a Secret."""

    host: str  # <service>.<namespace>.svc
    port: int
    database: str
    username: SecretKey
    password: SecretKey

    def url(self, user: str, password: str) -> str:
        """A SQLAlchemy URL; Kubernetes fills ``$(VAR)`` references in env values."""
        return f"postgresql+psycopg2://{user}:{password}@{self.host}:{self.port}/{self.database}"

    def describe(self) -> str:
        """Printable (no credentials)."""
        return f"postgresql://{self.host}:{self.port}/{self.database} (in-cluster)"


@dataclass(frozen=True)
class LogStore:
    """The TensorBoard log root on the S3 store and how a pod writes to it (TensorBoard's boto3 file system)."""

    uri: str
    endpoint: str
    region: str
    access_key: SecretKey
    secret_key: SecretKey


def _context(namespace: str) -> RenderContext:
    # only ${namespace} matters for in-cluster addresses; the rest is never read here
    return RenderContext(namespace=namespace, ingress_domain="unused", ingress_scheme="http",
                         ingress_class="unused", storage_class="-")


def _release_values(releases: ReleaseSet, name: str, namespace: str) -> tuple[Release, str, dict[str, Any]]:
    """(the release, its namespace, its values: our chart's defaults overlaid with helm/values)."""
    release = releases.get(name)
    values: dict[str, Any] = {}
    if release.is_local:
        defaults = releases.chart_path(release) / "values.yaml"
        values = yaml.safe_load(defaults.read_text(encoding="utf-8")) or {}
    overrides = load_values(releases.values_path(release), _context(namespace))
    return release, release.namespace_for(namespace), _overlay(values, overrides)


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        merged[key] = _overlay(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


def _service_host(host: str, namespace: str) -> str:
    """A values file's short Service name (same namespace as the release) as a full in-cluster name."""
    return host if "." in host else f"{host}.{namespace}.svc"


def mlflow_uri(helm_dir: Path, namespace: str) -> str:
    """MLflow's Service: the chart names it after the release and listens on ``service.port``.
    No basic auth in-cluster: the auth middleware sits on the ingress only."""
    release, ns, values = _release_values(load_releases(helm_dir), "mlflow", namespace)
    port = int((values.get("service") or {}).get("port") or MLFLOW_CHART_DEFAULT_PORT)
    name = values.get("fullnameOverride") or release.name
    return f"http://{name}.{ns}.svc:{port}"


def optuna_database(helm_dir: Path, namespace: str) -> OptunaDatabase:
    """The database optuna-dashboard reads (helm/values/optuna-dashboard.yaml `storage`): the
    workers write the studies the dashboard shows."""
    _, ns, values = _release_values(load_releases(helm_dir), "optuna-dashboard", namespace)
    storage = values["storage"]
    secret = storage["existingSecret"]
    return OptunaDatabase(
        host=_service_host(storage["host"], ns),
        port=int(storage["port"]),
        database=storage["database"],
        username=SecretKey(secret, storage["usernameKey"]),
        password=SecretKey(secret, storage["passwordKey"]),
    )


def tensorboard_logs(helm_dir: Path, namespace: str) -> LogStore:
    """The log root the cluster's TensorBoard watches (helm/values/tensorboard.yaml `logdir`)."""
    _, _, values = _release_values(load_releases(helm_dir), "tensorboard", namespace)
    logdir = values["logdir"]
    secret = logdir["existingSecret"]
    return LogStore(
        uri=logdir["uri"],
        endpoint=logdir["s3Endpoint"],
        region=logdir.get("s3Region") or "us-east-1",
        access_key=SecretKey(secret, logdir["accessKeyKey"]),
        secret_key=SecretKey(secret, logdir["secretKeyKey"]),
    )


def serving_resources(helm_dir: Path, runtime: str) -> dict[str, Any]:
    """The resources a runtime's serving pod gets (helm/values/chiml-runtimes.yaml over the chart's
    defaults): TensorRT plans are served by Triton, every other runtime by its own image."""
    _, _, values = _release_values(load_releases(helm_dir), "chiml-runtimes", "unused")
    section = values["triton"] if runtime == "tensorrt" else values["runtimes"][runtime]
    return dict(section.get("resources") or {})
