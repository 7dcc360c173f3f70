"""Turn a model URI into a self-contained local model folder for an endpoint.

The endpoint process must never need MLflow's server at run time (it may restart while the
platform is down), so ``deploy`` downloads the model once into the endpoint's own folder.
Accepted: ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/<run>/<path>``, any
artifact URI MLflow can read, and a local folder that is a model: an MLflow model (it holds
``MLmodel``) or a compiled artifact of ``chiml optimize`` (it holds ``chiml-runtime.json``). Any
other local path is refused before anything is copied, so a typo such as ``chiml deploy ~``
cannot copy a home directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from chiml.errors import ChimlError, InvalidInputError, NotFoundError, UnreachableError
from chiml.lifecycle import mlflow_client
from chiml_contract.artifact import MLMODEL_FILE, SPEC_FILE, RuntimeSpec


def resolve_artifact_uri(model_uri: str, tracking_uri: str) -> tuple[str, str]:
    """(artifact URI to download, what it resolved to) for a ``models:/`` URI; other URIs as
    they are. Resolved by :mod:`chiml.lifecycle.mlflow_client` against this platform's server,
    never MLflow's process-global registry URI."""
    if not mlflow_client.ModelURI.is_model_uri(model_uri):
        return model_uri, model_uri
    client = mlflow_client.client(tracking_uri)
    ref = mlflow_client.ModelURI.parse(model_uri)
    if ref.logged_model_id is not None:
        return mlflow_client.artifact_location(client, model_uri), f"logged model {ref.logged_model_id}"
    version = mlflow_client.resolve_model_version(client, ref).version
    pinned = f"models:/{ref.name}/{version}{ref.path}"  # the alias or "latest" resolved once
    return mlflow_client.artifact_location(client, pinned), f"{ref.name} version {version}"


def is_local_path(model_uri: str) -> bool:
    """Whether ``model_uri`` names a path on this machine rather than a URI (``models:/``, ``s3://``...)."""
    return "://" not in model_uri and ":/" not in model_uri


def local_model(model_uri: str) -> Path:
    """The local model folder ``model_uri`` names: an MLflow model or a compiled artifact.

    :class:`NotFoundError` when nothing is there, :class:`InvalidInputError` for anything else
    (a file, a folder that is not a model)."""
    path = Path(model_uri).expanduser()
    if not path.exists():
        raise NotFoundError(f"model {model_uri!r} not found: not a models:/ or runs:/ URI and no such path")
    if not (is_mlflow_model(path) or is_compiled_artifact(path)):
        raise InvalidInputError(
            f"{model_uri} is not a model folder: it holds neither {MLMODEL_FILE} (an MLflow model) nor "
            f"{SPEC_FILE} (a `chiml optimize` artifact)",
            hint="deploy models:/NAME/VERSION, runs:/RUN/PATH, or the folder mlflow.<flavor>.save_model wrote",
        )
    return path


def local_runtime(path: Path) -> str:
    """The runtime a checked local model folder is served by: ``mlflow``, or the compiled artifact's."""
    return "mlflow" if is_mlflow_model(path) else RuntimeSpec.read(path).runtime


def download_model(model_uri: str, dest: Path, tracking_uri: str) -> str:
    """Download (or copy, for a local model folder) the model at ``model_uri`` into ``dest``
    (which must not exist); return what the URI resolved to (e.g. ``digits version 3``)."""
    if is_local_path(model_uri):
        local = local_model(model_uri)
        shutil.copytree(local, dest)
        return str(local.resolve())
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    # MLflow puts a directory under dst_path by its last path component: download into a
    # staging folder beside dest, then move the result into place.
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=dest.parent))
    try:
        with mlflow_client.fetch_settings():
            artifact_uri, resolved = resolve_artifact_uri(model_uri, tracking_uri)
            downloaded = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=artifact_uri, dst_path=str(staging), tracking_uri=tracking_uri,
                    registry_uri=tracking_uri,
                )
            )
        if downloaded.is_dir():
            os.replace(downloaded, dest)
        else:
            dest.mkdir()
            os.replace(downloaded, dest / downloaded.name)
    except MlflowException as err:
        first = str(err.message).splitlines()[0]
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFoundError(
                f"model {model_uri} not found in MLflow at {tracking_uri}: {first}",
                hint="list registered models with `chiml models list`",
            ) from None
        raise ChimlError(f"cannot fetch {model_uri} from MLflow at {tracking_uri}: {first}") from None
    except OSError as err:  # requests' ConnectionError is an OSError
        raise UnreachableError(
            f"cannot reach MLflow at {tracking_uri} to fetch {model_uri}: {err.__class__.__name__}",
            hint="is the platform up? (`chiml status`)",
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return resolved


def is_mlflow_model(path: Path) -> bool:
    return (path / MLMODEL_FILE).is_file()


def is_compiled_artifact(path: Path) -> bool:
    return (path / SPEC_FILE).is_file()
