"""The platform's MLflow server as the lifecycle uses it: reachability, experiments, URLs, models.

Artifacts go through the server's artifact proxy (``mlflow-artifacts:``), so a client only
ever needs the tracking URL, on every profile.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from chiml.errors import UnreachableError


def client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` for the platform, after checking that the server answers.

    MLflow's own client retries a dead server for minutes; a down platform should be a
    one-line error right away.
    """
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
    """Client settings for this process and the ones it starts.

    A dead server is caught up front by :func:`check_reachable`, so the retries only have to
    ride out a server that restarts while a run is logging (the supervisor brings a killed
    MLflow back within seconds, a pod takes longer): 5 retries with backoff factor 1 wait
    about 30 s in all, instead of MLflow's default of 7 retries over minutes. MLflow's
    "View run at" line on every run end is dropped: chiml prints the run URL once itself.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def experiment_id(mlflow_client: Any, name: str) -> str:
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
    return experiment.experiment_id


def run_url(tracking_uri: str, experiment: str, run: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment}/runs/{run}"


def run_model_uri(mlflow_client: Any, experiment: str, run: str) -> str | None:
    """URI of the model logged by ``run`` (its latest one), or None."""
    models = mlflow_client.search_logged_models(
        experiment_ids=[experiment],
        filter_string=f"source_run_id = '{run}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
        max_results=1,
    )
    return f"models:/{models[0].model_id}" if models else None
