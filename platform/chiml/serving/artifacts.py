"""Turn a model URI into a self-contained local model folder for an endpoint.

The endpoint process must never need MLflow's server at run time (it may restart while the
platform is down), so ``deploy`` downloads the model once into the endpoint's own folder.
Accepted: ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/<run>/<path>``, any
artifact URI MLflow can read, and a local folder (copied).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from chiml.environ import scoped_environ
from chiml.errors import ChimlError

# MLflow's HTTP client retries 7 times with backoff by default: minutes before a user hears
# that the tracking server is down. Two quick retries are enough on a local/cluster network.
_MLFLOW_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<ref>[^/]+))?(?P<path>/.+)?$")


def resolve_artifact_uri(model_uri: str, tracking_uri: str) -> tuple[str, str]:
    """(artifact URI to download, what it resolved to) for a ``models:/`` URI.

    MLflow 3.17 resolves registry URIs against the *global* registry URI, ignoring the
    ``registry_uri`` passed to ``download_artifacts``; chiml resolves them itself with a client
    bound to this platform's server so that a notebook's own MLflow settings never interfere.
    """
    match = _MODELS_URI.match(model_uri)
    if match is None:
        return model_uri, model_uri
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name, alias, ref, path = match["name"], match["alias"], match["ref"], match["path"] or ""
    if alias is None and ref is None and name.startswith("m-"):  # a logged model id: models:/m-...
        return client.get_logged_model(name).artifact_location + path, f"logged model {name}"
    if alias is not None:
        version = client.get_model_version_by_alias(name, alias).version
    elif ref is None or ref.lower() == "latest":
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise ChimlError(f"registered model {name!r} has no versions")
        version = str(max(int(v.version) for v in versions))
    elif ref.isdigit():
        version = client.get_model_version(name, ref).version
    else:  # a (deprecated) stage name
        latest = client.get_latest_versions(name, stages=[ref])
        if not latest:
            raise ChimlError(f"registered model {name!r} has no version in stage {ref!r}")
        version = latest[0].version
    return client.get_model_version_download_uri(name, version) + path, f"{name} version {version}"


def download_model(model_uri: str, dest: Path, tracking_uri: str) -> str:
    """Download (or copy) the model at ``model_uri`` into ``dest`` (which must not exist);
    return what the URI resolved to (e.g. ``digits version 3``)."""
    local = Path(model_uri).expanduser()
    if "://" not in model_uri and ":/" not in model_uri:
        if not local.exists():
            raise ChimlError(f"model {model_uri!r} not found: not a models:/ or runs:/ URI and no such path")
        if local.is_dir():
            shutil.copytree(local, dest)
        else:
            dest.mkdir(parents=True)
            shutil.copy2(local, dest / local.name)
        return str(local.resolve())
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    # MLflow puts a directory under dst_path by its last path component: download into a
    # staging folder beside dest, then move the result into place.
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=dest.parent))
    try:
        with scoped_environ(_MLFLOW_ENV, override=False):
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
        code = getattr(err, "error_code", "")
        first = str(err.message if hasattr(err, "message") else err).splitlines()[0]
        if code == "RESOURCE_DOES_NOT_EXIST":
            raise ChimlError(
                f"model {model_uri} not found in MLflow at {tracking_uri}: {first}",
                hint="list registered models with `chiml models list`",
            ) from None
        raise ChimlError(f"cannot fetch {model_uri} from MLflow at {tracking_uri}: {first}") from None
    except OSError as err:  # requests' ConnectionError is an OSError
        raise ChimlError(
            f"cannot reach MLflow at {tracking_uri} to fetch {model_uri}: {err.__class__.__name__}",
            hint="is the platform up? (`chiml status`)",
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return resolved


def is_mlflow_model(path: Path) -> bool:
    return (path / "MLmodel").is_file()
