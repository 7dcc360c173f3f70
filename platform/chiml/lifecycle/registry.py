"""`chiml models`: the platform's model registry, which is MLflow's, not a parallel one.

Versions are promoted with MLflow *aliases* (``models:/digits@production``), the mechanism
MLflow 3 recommends over the deprecated stages. Archiving a version removes its aliases (an
archived version must not keep serving as ``@production``) and marks it with the
``Archived`` stage plus a ``chiml.archived`` tag, so the MLflow UI shows it archived too.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from chiml.errors import ChimlError, InvalidInputError, NotFoundError
from chiml.lifecycle import mlflow_client
from chiml.sites import TrackingSite

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
ARCHIVED_TAG = "chiml.archived"


@dataclass
class ModelVersionInfo:
    name: str
    version: str
    source: str
    run_id: str | None
    status: str
    aliases: list[str]
    archived: bool
    created: int
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "uri": self.uri}


@dataclass
class RegisteredModelInfo:
    name: str
    description: str
    latest_version: str | None
    aliases: dict[str, str]
    updated: int
    versions: list[ModelVersionInfo] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "versions": [v.to_json() for v in self.versions]}


class ModelRegistry:
    """Register, list, describe, promote and archive model versions."""

    def __init__(self, platform: TrackingSite) -> None:
        self.platform = platform
        mlflow_client.configure_client_env()
        self.client = mlflow_client.connect(platform)

    # ------------------------------------------------------------------ register
    def resolve_source(self, source: str) -> tuple[str, str | None, str | None]:
        """Turn what the user gave into ``(model_uri, run_id, model_id)``.

        Accepts a run id (the model logged by that run; for a tuning study's parent run, the
        best trial's model), ``runs:/<id>/<path>``, ``models:/<model-id>`` or ``models:/name/version``.
        """
        from mlflow.exceptions import MlflowException

        if source.startswith("models:/m-") and "/" not in source.removeprefix("models:/"):
            # A logged model (MLflow 3): the registry wants its id and run alongside the URI.
            model_id = source.removeprefix("models:/")
            try:
                logged = self.client.get_logged_model(model_id)
            except MlflowException:
                raise NotFoundError(f"no logged model {model_id}") from None
            return source, logged.source_run_id, model_id
        if source.startswith(("runs:/", "models:/")):
            return source, None, None
        if not _RUN_ID.match(source):
            raise InvalidInputError(f"{source!r} is neither a run id nor a runs:/ or models:/ URI")
        try:
            run = self.client.get_run(source)
        except MlflowException:
            raise NotFoundError(f"no MLflow run {source}") from None
        experiment = run.info.experiment_id
        uri = mlflow_client.run_model_uri(self.client, experiment, source)
        if uri is None and run.data.tags.get("chiml.best_run_id"):
            best = run.data.tags["chiml.best_run_id"]
            uri = mlflow_client.run_model_uri(self.client, experiment, best)
            source = best
        if uri is None:
            raise NotFoundError(
                f"run {source} logged no model",
                hint="call ct.log_model(model, input_example=...) in the script",
            )
        return uri, source, uri.removeprefix("models:/")

    def register(self, source: str, name: str, *, description: str | None = None, tags: dict[str, str] | None = None
                 ) -> ModelVersionInfo:
        """Add a new version of ``name`` (the registered model is created on first use)."""
        from mlflow.exceptions import MlflowException

        _check_name(name)
        uri, run_id, model_id = self.resolve_source(source)
        try:
            if not self._exists(name):
                self.client.create_registered_model(name)
            version = self.client.create_model_version(
                name, uri, run_id=run_id, model_id=model_id, description=description, tags=tags
            )
        except MlflowException as err:
            raise ChimlError(f"could not register {source} as {name}: {err.message}") from None
        return self._version_info(version)

    # ------------------------------------------------------------------ read
    def list(self) -> list[RegisteredModelInfo]:
        models = self.client.search_registered_models(max_results=1000)
        return [self._model_info(model, versions=False) for model in models]

    def describe(self, name: str) -> RegisteredModelInfo:
        return self._model_info(self._get(name), versions=True)

    def version(self, name: str, version_or_alias: str) -> ModelVersionInfo:
        from mlflow.exceptions import MlflowException

        self._get(name)
        try:
            if version_or_alias.isdigit():
                found = self.client.get_model_version(name, version_or_alias)
            else:
                found = self.client.get_model_version_by_alias(name, version_or_alias)
        except MlflowException:
            raise NotFoundError(f"model {name} has no version or alias {version_or_alias!r}") from None
        return self._version_info(found)

    # ------------------------------------------------------------------ change
    def promote(self, name: str, version: str | int, alias: str = "production") -> ModelVersionInfo:
        """Point ``alias`` at ``version`` (moving it from whichever version had it)."""
        info = self.version(name, str(version))
        if info.archived:
            raise InvalidInputError(f"{name} version {version} is archived", hint="register it again to serve it")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", alias) or alias.lower() == "latest" or alias.isdigit():
            raise InvalidInputError(f"invalid alias {alias!r}: letters, digits, - and _, not a number and not 'latest'")
        self.client.set_registered_model_alias(name, alias, str(version))
        return self.version(name, str(version))

    def demote(self, name: str, alias: str) -> None:
        self._get(name)
        self.client.delete_registered_model_alias(name, alias)

    def archive(self, name: str, version: str | int) -> ModelVersionInfo:
        info = self.version(name, str(version))
        for alias in info.aliases:
            self.client.delete_registered_model_alias(name, alias)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stages are deprecated in MLflow 3 but still shown by its UI
            self.client.transition_model_version_stage(name, str(version), "Archived")
        self.client.set_model_version_tag(name, str(version), ARCHIVED_TAG, "true")
        return self.version(name, str(version))

    # ------------------------------------------------------------------ helpers
    def _exists(self, name: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
            return True
        except MlflowException:
            return False

    def _get(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException:
            raise NotFoundError(f"no registered model {name!r}", hint="see `chiml models list`") from None

    def _model_info(self, model: Any, versions: bool) -> RegisteredModelInfo:
        aliases = dict(model.aliases or {})
        latest = max((int(v.version) for v in model.latest_versions or []), default=None)
        info = RegisteredModelInfo(
            name=model.name,
            description=model.description or "",
            latest_version=str(latest) if latest is not None else None,
            aliases=aliases,
            updated=model.last_updated_timestamp or 0,
        )
        if versions:
            found = self.client.search_model_versions(f"name = '{_quote(model.name)}'")
            info.versions = sorted((self._version_info(v) for v in found), key=lambda v: int(v.version))
            # search_model_versions leaves aliases out: take them from the registered model.
            for version in info.versions:
                version.aliases = sorted(a for a, v in aliases.items() if str(v) == version.version)
            if info.versions:
                info.latest_version = info.versions[-1].version
        return info

    def _version_info(self, version: Any) -> ModelVersionInfo:
        tags = dict(version.tags or {})
        return ModelVersionInfo(
            name=version.name,
            version=str(version.version),
            source=version.source,
            run_id=version.run_id or None,
            status=version.status,
            aliases=list(version.aliases or []),
            archived=tags.get(ARCHIVED_TAG) == "true",
            created=version.creation_timestamp or 0,
            description=version.description or "",
            tags=tags,
        )


def _check_name(name: str) -> None:
    if not name or "/" in name or "@" in name or ":" in name:
        raise InvalidInputError(f"invalid model name {name!r}: no '/', '@' or ':'")


def _quote(name: str) -> str:
    return name.replace("'", "\\'")
