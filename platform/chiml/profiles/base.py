"""The contract every profile fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from chiml.config import ChimlConfig, LoadedConfig
from chiml.errors import NotSupportedError
from chiml.plan import PlanSection, UpPlan
from chiml.progress import Confirm, Progress, silent
from chiml.state import StateStore

if TYPE_CHECKING:
    from pathlib import Path

    from chiml.serving.backend import EndpointBackend


@dataclass
class ServiceStatus:
    """Health of one platform service, as `chiml status` shows it."""

    name: str
    url: str | None
    healthy: bool
    detail: str = ""
    pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SmokeRun(NamedTuple):
    """The pytest arguments and environment of `chiml smoke` on a profile."""

    args: list[str]
    env: dict[str, str]


class Profile(ABC):
    """One way of running the platform (local processes, Chameleon, a Kubernetes cluster).

    Long operations report through ``progress`` (:mod:`chiml.progress`) and never print; what
    a profile cannot do raises :class:`NotSupportedError`.
    """

    name: str

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.config: ChimlConfig = loaded.config
        self.home: Path = loaded.home
        self.state = StateStore(loaded.home)

    # ----------------------------------------------------------------- platform
    @abstractmethod
    def plan(self) -> UpPlan:
        """What `up` would do; touches no network and writes nothing."""

    @abstractmethod
    def up(self, progress: Progress = silent) -> list[ServiceStatus]:
        """Bring the platform up (idempotent) and return the status of every service."""

    @abstractmethod
    def down(self, yes: bool = False, progress: Progress = silent, confirm: Confirm | None = None) -> None:
        """Stop the platform; data is kept unless the profile says otherwise (then ``confirm`` is
        asked first, unless ``yes``)."""

    @abstractmethod
    def status(self) -> list[ServiceStatus]:
        """Health and URL of every service; never raises because a service is down."""

    def logs(self, service: str, lines: int = 100, follow: bool = False) -> Iterator[str]:
        """The last ``lines`` lines of a service's log (then new ones as they come, with ``follow``)."""
        raise NotSupportedError(f"`chiml logs` is not available on the {self.name} profile")

    def secrets(self) -> dict[str, str]:
        """Generated platform credentials (`chiml status --show-secrets`); none by default."""
        return {}

    def smoke_args(self) -> SmokeRun:
        """pytest arguments and environment for `chiml smoke` on this profile."""
        raise NotSupportedError(f"`chiml smoke` is not available on the {self.name} profile")

    # ----------------------------------------------------------------- where things are
    # The lifecycle asks the profile where things are, so the same calls work everywhere.
    @abstractmethod
    def tracking_uri(self) -> str:
        """MLflow tracking URI clients use (a pure lookup: no side effect)."""

    def tracking_credentials(self) -> dict[str, str]:
        """Environment variables MLflow's client needs to reach :meth:`tracking_uri` (basic-auth
        credentials behind an ingress); none by default."""
        return {}

    @abstractmethod
    def optuna_storage(self) -> str:
        """Optuna storage URL (or journal file path) shared by tuning workers."""

    @abstractmethod
    def tensorboard_logdir(self) -> str:
        """Log root every run writes TensorBoard events under."""

    def endpoints(self, connect: bool = True) -> EndpointBackend:
        """The endpoint backend: deploy/list/scale/delete model endpoints. ``connect=False``: one
        that only builds what it would send (``manifests``), for a dry run without a cluster."""
        raise NotSupportedError(f"endpoints are not available on the {self.name} profile")


__all__ = ["Confirm", "PlanSection", "Profile", "ServiceStatus", "SmokeRun", "UpPlan"]
