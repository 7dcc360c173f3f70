"""How the control plane talks to the platform's MLflow: a checked client, its settings,
experiments, run URLs, and the one resolver of ``models:/`` URIs.

Artifacts go through the server's artifact proxy (``mlflow-artifacts:``), so a client only
ever needs the tracking URL (and, behind the cluster ingress, the credentials the profile
gives), on every profile.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from chiml.environ import scoped_environ
from chiml.errors import InvalidInputError, NotFoundError, UnreachableError
from chiml.sites import TrackingSite

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

# A dead server is caught up front by :func:`check_reachable`, so the retries of a run only have
# to ride out a server that restarts while it logs: the supervisor restarts a killed MLflow at
# once, but MLflow itself takes 5-50 s to start on a busy 2-core machine (measured by
# tests/reliability: two interpreters import it, `mlflow server` and its uvicorn), and a pod takes
# longer. 7 retries with backoff factor 1 wait about 2 minutes in all (0, 2, 4, ... 64 s), half
# of MLflow's default (factor 2). MLflow's "View run at" line on every run end is dropped: chiml
# prints the run URL once itself.
RUN_SETTINGS: Mapping[str, str] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# A one-shot fetch (a model download for an endpoint) reports a down server in seconds instead,
# and draws no progress bar.
FETCH_SETTINGS: Mapping[str, str] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
# No run URLs on stdout (they would corrupt `--json`) and no download progress bars.
QUIET_SETTINGS: Mapping[str, str] = {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def connect(site: TrackingSite) -> MlflowClient:
    """A checked ``MlflowClient`` for the platform, with this process set up to use it."""
    return connect_to(site.tracking_uri, site.tracking_credentials())


def connect_to(tracking_uri: str, credentials: Mapping[str, str]) -> MlflowClient:
    """A checked ``MlflowClient`` for ``tracking_uri``, sending ``credentials``.

    MLflow's client reads its credentials (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``) from the
    environment, so they are exported there (values the user set win), where the runs and
    tuning workers this process starts find them too.
    """
    for key, value in credentials.items():
        os.environ.setdefault(key, value)
    return client(tracking_uri)


def artifact_location(mlflow_client: MlflowClient, model_uri: str) -> str:
    """Where the artifacts a ``models:/`` or ``runs:/`` URI names are stored (``mlflow-artifacts:/...``),
    asked of this client's server."""
    if ModelURI.is_model_uri(model_uri):
        ref = ModelURI.parse(model_uri)
        if ref.logged_model_id is not None:
            return str(mlflow_client.get_logged_model(ref.logged_model_id).artifact_location) + ref.path
        version = resolve_model_version(mlflow_client, ref)
        return str(mlflow_client.get_model_version_download_uri(ref.name, version.version)) + ref.path
    run_id, _, path = model_uri.removeprefix("runs:/").partition("/")
    return f"{mlflow_client.get_run(run_id).info.artifact_uri.rstrip('/')}/{path}".rstrip("/")


def client(tracking_uri: str) -> MlflowClient:
    """An ``MlflowClient`` bound to ``tracking_uri`` (tracking and registry), after checking that
    the server answers: a down platform is a one-line error right away."""
    check_reachable(tracking_uri)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    if not tracking_uri.startswith(("http://", "https://")):
        return  # a file/database store: nothing to probe
    try:
        response = httpx.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError as err:
        raise UnreachableError(
            f"MLflow at {tracking_uri} is not reachable ({type(err).__name__})",
            hint="start the platform with `chiml up` and check `chiml status`",
        ) from None
    if response.status_code != 200:
        raise UnreachableError(f"MLflow at {tracking_uri} answered {response.status_code} on /health")


def configure_client_env() -> None:
    """:data:`RUN_SETTINGS` for this process and the ones it starts (values the user set win)."""
    for key, value in RUN_SETTINGS.items():
        os.environ.setdefault(key, value)


def fetch_settings() -> AbstractContextManager[None]:
    """:data:`FETCH_SETTINGS` for the length of a block (values the user set win)."""
    return scoped_environ(FETCH_SETTINGS, override=False)


def quiet() -> AbstractContextManager[None]:
    """:data:`QUIET_SETTINGS` for the length of a block."""
    return scoped_environ(QUIET_SETTINGS)


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """Get or create the experiment ``name`` (restoring it if it was deleted)."""
    from mlflow.exceptions import MlflowException

    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return mlflow_client.create_experiment(name)
        except MlflowException:  # created concurrently by another process
            experiment = mlflow_client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        mlflow_client.restore_experiment(experiment.experiment_id)
    return str(experiment.experiment_id)


def run_url(tracking_uri: str, experiment: str, run: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment}/runs/{run}"


def run_model_uri(mlflow_client: MlflowClient, experiment: str, run: str) -> str | None:
    """URI of the model logged by ``run`` (its latest one), or None."""
    models = mlflow_client.search_logged_models(
        experiment_ids=[experiment],
        filter_string=f"source_run_id = '{run}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
        max_results=1,
    )
    return f"models:/{models[0].model_id}" if models else None


# ---------------------------------------------------------------------------- models:/ URIs
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<ref>[^/]+))?(?P<path>/.+)?$")


@dataclass(frozen=True)
class ModelURI:
    """A parsed ``models:/`` URI.

    ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME`` or ``models:/NAME/latest``
    (the newest version), ``models:/NAME/STAGE`` (MLflow's deprecated stages) and
    ``models:/m-<id>`` (a logged model, MLflow 3), each optionally followed by a ``/path``.
    """

    name: str
    alias: str | None = None
    ref: str | None = None  # a version number, "latest" or a stage name
    path: str = ""

    @classmethod
    def parse(cls, uri: str) -> ModelURI:
        match = _MODELS_URI.match(uri.strip())
        if match is None:
            raise InvalidInputError(
                f"{uri!r} is not a registered model URI", hint="use models:/NAME@ALIAS or models:/NAME/VERSION"
            )
        return cls(match["name"], match["alias"], match["ref"], match["path"] or "")

    @staticmethod
    def is_model_uri(uri: str) -> bool:
        return _MODELS_URI.match(uri.strip()) is not None

    @property
    def logged_model_id(self) -> str | None:
        """The id of a logged model (``models:/m-...``), which names no registered version."""
        if self.alias is None and self.ref is None and self.name.startswith("m-"):
            return self.name
        return None

    def describe(self) -> str:
        if self.alias is not None:
            return f"@{self.alias}"
        if self.ref is None or self.ref.lower() == "latest":
            return "latest version"
        return f"version {self.ref}" if self.ref.isdigit() else f"stage {self.ref}"


def resolve_model_version(mlflow_client: MlflowClient, uri: ModelURI | str) -> ModelVersion:
    """The registered ``ModelVersion`` a ``models:/`` URI names, asked of this client's registry.

    MLflow resolves ``models:/`` URIs against its *process-global* registry URI; chiml resolves
    them with a client bound to the platform's server so that a notebook's own MLflow settings
    never interfere. :class:`NotFoundError` when the model or that version does not exist.
    """
    from mlflow.exceptions import MlflowException

    ref = ModelURI.parse(uri) if isinstance(uri, str) else uri
    if ref.logged_model_id is not None:
        raise InvalidInputError(f"models:/{ref.name} is a logged model, not a registered model version")
    try:
        if ref.alias is not None:
            return mlflow_client.get_model_version_by_alias(ref.name, ref.alias)
        if ref.ref is None or ref.ref.lower() == "latest":
            versions = mlflow_client.search_model_versions(f"name = '{ref.name}'")
            if not versions:
                raise NotFoundError(f"registered model {ref.name!r} has no versions")
            return max(versions, key=lambda v: int(v.version))
        if ref.ref.isdigit():
            return mlflow_client.get_model_version(ref.name, ref.ref)
        latest = mlflow_client.get_latest_versions(ref.name, stages=[ref.ref])
    except MlflowException as err:
        first = str(err.message).splitlines()[0]
        raise NotFoundError(f"registered model {ref.name!r} {ref.describe()} not found: {first}") from None
    if not latest:
        raise NotFoundError(f"registered model {ref.name!r} has no version in stage {ref.ref!r}")
    return latest[0]
