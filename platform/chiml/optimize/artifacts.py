"""Find and download the compiled artifact `chiml deploy --runtime X` serves."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chiml.errors import ChimlError, InvalidInputError, NotFoundError
from chiml.lifecycle import mlflow_client
from chiml.optimize import tracking
from chiml.optimize.candidates import CANDIDATES
from chiml_contract.artifact import SPEC_FILE, RuntimeSpec

if TYPE_CHECKING:
    from mlflow import MlflowClient


def _optimization_runs(client: Any, name: str, version: str) -> list[Any]:
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    if experiment is None:
        return []
    query = f"tags.`{tracking.TAG_MODEL}` = '{name}' and tags.`{tracking.TAG_VERSION}` = '{version}'"
    return client.search_runs([experiment.experiment_id], filter_string=query,
                              order_by=["attributes.start_time DESC"], max_results=50)


def find_run(client: Any, name: str, version: Any, runtime: str) -> tuple[str, str]:
    """(run id, candidate name) of the latest finished optimization offering ``runtime``."""
    tags = dict(version.tags or {})
    if runtime == "auto" and tags.get(tracking.VERSION_TAG_RUN) and tags.get(tracking.VERSION_TAG_CHOSEN):
        return tags[tracking.VERSION_TAG_RUN], tags[tracking.VERSION_TAG_CHOSEN]
    for run in _optimization_runs(client, name, str(version.version)):
        if run.info.status != "FINISHED":
            continue
        passed = [item for item in run.data.tags.get(tracking.TAG_PASSED, "").split(",") if item]
        if runtime == "auto":
            chosen = run.data.tags.get(tracking.TAG_CHOSEN)
            if chosen:
                return run.info.run_id, chosen
        elif runtime in passed:
            return run.info.run_id, runtime
    what = "optimized runtime" if runtime == "auto" else f"{runtime} build that passed the gate"
    target = "" if runtime == "auto" else f" --target {runtime}"
    raise NotFoundError(f"models:/{name}/{version.version} has no {what}",
                        hint=f"run `chiml optimize models:/{name}/{version.version}{target}` first")


def resolve_runtime_artifact(platform: Any, model_uri: str, runtime: str) -> tuple[str, Path]:
    """(serving runtime name, local directory with model.onnx + chiml-runtime.json).

    ``runtime`` is ``auto`` (the runtime the latest optimization of that version chose) or a
    candidate name (onnxruntime, onnxruntime-int8, openvino, deepsparse, tensorrt). Downloads
    are cached under CHIML_HOME/optimize/artifacts/<run id>/<candidate>.
    """

    if runtime != "auto" and runtime not in CANDIDATES:
        raise InvalidInputError(f"unknown runtime {runtime!r}: choose auto or one of {', '.join(CANDIDATES)}")
    with mlflow_client.quiet():
        return _resolve(platform.tracking_uri, Path(platform.home), model_uri, runtime)


def compiled_artifact(client: MlflowClient, model_uri: str, runtime: str) -> tuple[str, str, str]:
    """(serving runtime, MLflow artifact URI of the compiled folder, candidate) without downloading.

    For a cluster, whose storage initializer fetches the artifact itself: ``runtime`` is ``auto``
    (the recorded decision) or a candidate; TensorRT is served by Triton from the run's model
    repository (``triton/``), every other runtime from ``runtimes/<candidate>/``. ``client`` is
    connected to the platform's MLflow (with its credentials: see ``mlflow_client.connect``).
    """
    if runtime != "auto" and runtime not in CANDIDATES:
        raise InvalidInputError(f"unknown runtime {runtime!r}: choose auto or one of {', '.join(CANDIDATES)}")
    with mlflow_client.quiet():
        ref = mlflow_client.ModelURI.parse(model_uri)
        run_id, candidate = find_run(client, ref.name, mlflow_client.resolve_model_version(client, ref), runtime)
        serving = CANDIDATES[candidate][0]
        folder = "triton" if serving == "tensorrt" else f"runtimes/{candidate}"
        return serving, f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{folder}", candidate


def _resolve(tracking_uri: str, home: Path, model_uri: str, runtime: str) -> tuple[str, Path]:
    import mlflow

    client = mlflow_client.client(tracking_uri)
    ref = mlflow_client.ModelURI.parse(model_uri)
    version = mlflow_client.resolve_model_version(client, ref)
    run_id, candidate = find_run(client, ref.name, version, runtime)
    cache = home / "optimize" / "artifacts" / run_id / candidate
    if not (cache / SPEC_FILE).is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{candidate}-", dir=cache.parent))
        try:
            downloaded = Path(mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"runtimes/{candidate}", dst_path=str(staging),
                tracking_uri=tracking_uri))
            if not (downloaded / SPEC_FILE).is_file():
                raise NotFoundError(f"run {run_id} has no compiled {candidate} artifact (runtimes/{candidate})")
            shutil.rmtree(cache, ignore_errors=True)
            os.replace(downloaded, cache)
        except ChimlError:
            raise
        except Exception as err:
            raise ChimlError(f"cannot download the {candidate} artifact of run {run_id}: {err}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    spec = RuntimeSpec.read(cache)
    return spec.runtime, cache
