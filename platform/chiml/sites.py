"""What each capability needs from the platform it runs on, as typed protocols.

The SDK's :class:`chiml.Platform` satisfies every one (its answers come from the profile, see
:class:`chiml.profiles.base.Profile`); tests and notebooks may pass small stand-ins. A
capability asks these questions and nothing else: never which profile it runs on, never by
probing attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from chiml.config import ChimlConfig

if TYPE_CHECKING:
    from chiml.serving.backend import EndpointBackend


class TrackingSite(Protocol):
    """Where the platform's MLflow is, and the credentials its clients send (registry, optimize)."""

    @property
    def tracking_uri(self) -> str: ...

    def tracking_credentials(self) -> dict[str, str]: ...


class ProfileName(Protocol):
    @property
    def name(self) -> str: ...


class TrainingSite(TrackingSite, Protocol):
    """What `train` and `tune` need: MLflow, the TensorBoard root, the Optuna storage, the config;
    the profile's name decides whether a run is a local process or a cluster Job."""

    @property
    def config(self) -> ChimlConfig: ...

    @property
    def home(self) -> Path: ...

    @property
    def tensorboard_logdir(self) -> str: ...

    @property
    def optuna_storage(self) -> str: ...

    @property
    def profile(self) -> ProfileName: ...


class OptimizeSite(TrackingSite, Protocol):
    """What `optimize` needs: MLflow, the config, and CHIML_HOME for its caches; the profile's name
    decides whether the runtimes are measured here or in Jobs on the cluster."""

    @property
    def config(self) -> ChimlConfig: ...

    @property
    def home(self) -> Path: ...

    @property
    def profile(self) -> ProfileName: ...


class ServingSite(Protocol):
    """What `predict`/`infer` need: the endpoint backend and the serving settings."""

    @property
    def config(self) -> ChimlConfig: ...

    @property
    def endpoints(self) -> EndpointBackend: ...
