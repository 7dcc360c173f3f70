"""The Python SDK: ``Platform.connect()`` and the lifecycle calls on it.

Every method is a thin front for a capability module (train/tune in :mod:`chiml.lifecycle`,
endpoints in :mod:`chiml.serving`, compiled runtimes in :mod:`chiml.optimize`), imported on
first use so that connecting stays cheap. The CLI calls the same functions, so the CLI and
the SDK cannot drift apart, and because capabilities ask the *profile* where services are,
the same calls work on the local, Kubernetes and Chameleon profiles.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from chiml.config import LoadedConfig, load_config
from chiml.errors import ChimlError
from chiml.profiles import Profile, ServiceStatus, get_profile


class Platform:
    """A handle on one chiml platform (one config + CHIML_HOME)."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.home = loaded.home
        self.profile: Profile = get_profile(loaded)

    @classmethod
    def connect(cls, config: str | os.PathLike[str] | None = None, profile: str | None = None) -> Platform:
        """Find the platform the way the CLI does (``--config``/``chiml.yaml``, ``CHIML_HOME``)."""
        return cls(load_config(config, profile))

    def __repr__(self) -> str:
        return f"Platform(profile={self.profile.name!r}, home={str(self.home)!r})"

    # ----------------------------------------------------------------- platform
    def up(self) -> list[ServiceStatus]:
        return self.profile.up()

    def down(self, *, release_lease: bool = False) -> None:
        """Stop the platform.

        On the chameleon profile this destroys the instances (their disks: MLflow runs, models,
        data) and deletes the Blazar lease, which may not be reservable again for days. A notebook
        cell must not do that by accident: it is refused unless ``release_lease=True`` is passed.
        """
        if self.profile.name == "chameleon" and not release_lease:
            raise ChimlError(
                "Platform.down() on Chameleon destroys every instance and deletes the lease",
                hint="pass release_lease=True to really release it (or run `chiml down` and confirm)",
            )
        self.profile.down(yes=True)

    def status(self) -> list[ServiceStatus]:
        return self.profile.status()

    @property
    def tracking_uri(self) -> str:
        return self.profile.tracking_uri()

    @property
    def optuna_storage(self) -> str:
        return self.profile.optuna_storage()

    @property
    def tensorboard_logdir(self) -> str:
        return self.profile.tensorboard_logdir()

    # ----------------------------------------------------------------- training and tuning
    def train(self, target: str | Path, params: dict[str, Any] | None = None, **options: Any) -> Any:
        """Run a script or ``module:function`` as a tracked MLflow run (see ``chiml train --help``)."""
        from chiml.lifecycle.train import run_training

        return run_training(self, str(target), params or {}, **options)

    def tune(self, target: str | Path, **options: Any) -> Any:
        """Run an Optuna study with parallel workers (see ``chiml tune --help``)."""
        from chiml.lifecycle.tune import run_study

        return run_study(self, str(target), **options)

    @property
    def runs(self) -> Any:
        """Training runs and studies: ``list()``, ``logs(run_id, follow=True)``, ``cancel(run_id)``."""
        from chiml.lifecycle.runs import Runs

        return Runs(self)

    # ----------------------------------------------------------------- model registry
    @property
    def models(self) -> Any:
        """The MLflow model registry (register, list, describe, promote, archive)."""
        from chiml.lifecycle.registry import ModelRegistry

        return ModelRegistry(self)

    # ----------------------------------------------------------------- serving
    @property
    def endpoints(self) -> Any:
        """The profile's endpoint backend (local processes or KServe InferenceServices)."""
        return self.profile.endpoints()

    def deploy(self, model_uri: str, name: str, **options: Any) -> Any:
        return self.endpoints.deploy(model_uri, name, **options)

    def predict(self, name: str, inputs: Any, **options: Any) -> Any:
        from chiml.serving.client import predict

        return predict(self, name, inputs, **options)

    # ----------------------------------------------------------------- optimization
    def optimize(self, model_uri: str, target: str = "auto", **options: Any) -> Any:
        from chiml.optimize.pipeline import optimize

        return optimize(self, model_uri, target=target, **options)
