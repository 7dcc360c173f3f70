"""The Python SDK: ``Platform.connect()`` and the lifecycle calls on it.

Every method is a thin front for a capability module (train/tune in :mod:`chiml.lifecycle`,
endpoints in :mod:`chiml.serving`, compiled runtimes in :mod:`chiml.optimize`), imported on
first use so that connecting stays cheap. The CLI calls the same functions, so the CLI and
the SDK cannot drift apart, and because capabilities ask the *profile* where services are,
the same calls work on the local, Kubernetes and Chameleon profiles.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from chiml.config import LoadedConfig, load_config
from chiml.errors import InvalidInputError
from chiml.profiles import Profile, ServiceStatus, get_profile
from chiml.profiles.base import SmokeRun, UpPlan
from chiml.progress import Confirm, Progress, silent

if TYPE_CHECKING:
    from chiml.chameleon.deployment import DeploymentLease
    from chiml.lifecycle.registry import ModelRegistry
    from chiml.lifecycle.runs import Runs
    from chiml.lifecycle.train import TrainResult
    from chiml.lifecycle.tune import StudyResult
    from chiml.optimize.report import OptimizeReport
    from chiml.serving.backend import Endpoint, EndpointBackend


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
    def plan(self) -> UpPlan:
        """What :meth:`up` would do, computed without touching anything."""
        return self.profile.plan()

    def up(self, progress: Progress = silent) -> list[ServiceStatus]:
        """Bring the platform up (idempotent); the status of every service."""
        return self.profile.up(progress=progress)

    def down(self, *, release_lease: bool = False, confirm: Confirm | None = None, progress: Progress = silent) -> None:
        """Stop the platform.

        On the chameleon profile this destroys the instances (their disks: MLflow runs, models,
        data) and deletes the Blazar lease, which may not be reservable again for days. A notebook
        cell must not do that by accident: it is refused unless ``release_lease=True`` is passed
        or ``confirm`` (asked with the question) says yes.
        """
        if self.profile.name == "chameleon" and not release_lease and confirm is None:
            raise InvalidInputError(
                "Platform.down() on Chameleon destroys every instance and deletes the lease",
                hint="pass release_lease=True to really release it (or run `chiml down` and confirm)",
            )
        self.profile.down(yes=confirm is None, progress=progress, confirm=confirm)

    def status(self) -> list[ServiceStatus]:
        """Health and URL of every service (never raises because one is down)."""
        return self.profile.status()

    def logs(self, service: str, lines: int = 100, follow: bool = False) -> Iterator[str]:
        """A service's last log lines (and new ones as they come, with ``follow``)."""
        return self.profile.logs(service, lines=lines, follow=follow)

    def secrets(self) -> dict[str, str]:
        """Generated platform credentials (none on the local profile)."""
        return self.profile.secrets()

    def smoke_args(self) -> SmokeRun:
        """The pytest arguments and environment of the smoke suite for this profile."""
        return self.profile.smoke_args()

    @property
    def tracking_uri(self) -> str:
        return self.profile.tracking_uri()

    def tracking_credentials(self) -> dict[str, str]:
        """What MLflow's client needs in its environment to reach :attr:`tracking_uri` (see
        :func:`chiml.lifecycle.mlflow_client.connect`)."""
        return self.profile.tracking_credentials()

    @property
    def optuna_storage(self) -> str:
        return self.profile.optuna_storage()

    @property
    def tensorboard_logdir(self) -> str:
        return self.profile.tensorboard_logdir()

    def import_images(self, refs: list[str], *, engine: str | None = None, progress: Progress = silent) -> None:
        """Copy locally built images (``chiml images build``) into every node of the deployment
        (Chameleon: over SSH into k3s's containerd); other profiles pull from a registry."""
        self.profile.import_images(refs, engine=engine, progress=progress)

    @property
    def lease(self) -> DeploymentLease:
        """The Chameleon lease of this CHIML_HOME's deployment (show, extend, delete)."""
        from chiml.chameleon.deployment import ChameleonDeployment

        return ChameleonDeployment(self.loaded).lease

    # ----------------------------------------------------------------- training and tuning
    def train(self, target: str | Path, params: dict[str, Any] | None = None, **options: Any
              ) -> TrainResult | list[dict[str, Any]]:
        """Run a script or ``module:function`` as a tracked MLflow run (see ``chiml train --help``);
        with ``dry_run=True`` (cluster profiles), the Kubernetes objects it would create."""
        from chiml.lifecycle.train import run_training

        return run_training(self, str(target), params or {}, **options)

    @overload
    def tune(self, target: str | Path, *, dry_run: Literal[False] = False, **options: Any) -> StudyResult: ...

    @overload
    def tune(self, target: str | Path, *, dry_run: Literal[True], **options: Any) -> list[dict[str, Any]]: ...

    def tune(self, target: str | Path, *, dry_run: bool = False, **options: Any
             ) -> StudyResult | list[dict[str, Any]]:
        """Run an Optuna study with parallel workers (see ``chiml tune --help``); with ``dry_run=True``
        (cluster profiles), the Kubernetes objects it would create."""
        from chiml.lifecycle.tune import run_study

        return run_study(self, str(target), dry_run=dry_run, **options)

    @property
    def runs(self) -> Runs:
        """Training runs and studies: ``list()``, ``logs(run_id, follow=True)``, ``cancel(run_id)``."""
        from chiml.lifecycle.runs import Runs

        return Runs(self)

    # ----------------------------------------------------------------- model registry
    @property
    def models(self) -> ModelRegistry:
        """The MLflow model registry (register, list, describe, promote, archive)."""
        from chiml.lifecycle.registry import ModelRegistry

        return ModelRegistry(self)

    # ----------------------------------------------------------------- serving
    @property
    def endpoints(self) -> EndpointBackend:
        """The profile's endpoint backend (local processes or KServe InferenceServices)."""
        return self.profile.endpoints()

    @overload
    def deploy(self, model_uri: str, name: str, *, dry_run: Literal[False] = False, **options: Any) -> Endpoint: ...

    @overload
    def deploy(self, model_uri: str, name: str, *, dry_run: Literal[True], **options: Any) -> list[dict[str, Any]]: ...

    def deploy(
        self, model_uri: str, name: str, *, dry_run: bool = False, **options: Any
    ) -> Endpoint | list[dict[str, Any]]:
        """Serve a model under ``name`` (an existing endpoint is updated, rolling); ``dry_run``
        (cluster profiles): the Kubernetes objects it would create, nothing contacted."""
        if dry_run:
            options.pop("progress", None)
            return self.profile.endpoints(connect=False).manifests(model_uri, name, **options)
        return self.endpoints.deploy(model_uri, name, **options)

    def predict(self, name: str, inputs: Any, **options: Any) -> Any:
        """numpy in, numpy out: one array (single-input model) or a dict name -> array."""
        from chiml.serving.client import predict

        return predict(self, name, inputs, **options)

    def infer(self, name: str, request: Any, **options: Any) -> dict[str, Any]:
        """A JSON request in (a V2 body, ``{"inputs": ...}``, ``{"instances": [...]}`` or a list), the V2
        response body out."""
        from chiml.serving.client import infer

        return infer(self, name, request, **options)

    # ----------------------------------------------------------------- optimization
    @overload
    def optimize(self, model_uri: str, target: str = "auto", *, dry_run: Literal[False] = False,
                 **options: Any) -> OptimizeReport: ...

    @overload
    def optimize(self, model_uri: str, target: str = "auto", *, dry_run: Literal[True],
                 **options: Any) -> list[dict[str, Any]]: ...

    def optimize(self, model_uri: str, target: str = "auto", *, dry_run: bool = False,
                 **options: Any) -> OptimizeReport | list[dict[str, Any]]:
        """Compile, gate and time the model for each runtime and record the fastest (see ``chiml
        optimize --help``); on a cluster profile each runtime is measured in a Job, and
        ``dry_run=True`` returns those Jobs instead."""
        from chiml.optimize.pipeline import optimize

        return optimize(self, model_uri, target=target, dry_run=dry_run, **options)
