"""The contract every profile fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from chiml.config import LoadedConfig
from chiml.errors import NotSupportedError
from chiml.state import StateStore


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


class Profile(ABC):
    """One way of running the platform (local processes, Chameleon, a Kubernetes cluster)."""

    name: str

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.home = loaded.home
        self.state = StateStore(loaded.home)

    @abstractmethod
    def up(self, dry_run: bool = False) -> list[ServiceStatus]:
        """Bring the platform up (idempotent) and return the status of every service."""

    @abstractmethod
    def down(self, yes: bool = False) -> None:
        """Stop the platform; data is kept unless the profile says otherwise."""

    @abstractmethod
    def status(self) -> list[ServiceStatus]:
        """Health and URL of every service; never raises because a service is down."""

    def logs(self, service: str, lines: int = 100, follow: bool = False) -> None:
        """Print a service's log (profiles override)."""
        raise NotSupportedError(f"`chiml logs` is not available on the {self.name} profile")

    # The lifecycle SDK asks the profile where things are, so the same calls work everywhere.
    @abstractmethod
    def tracking_uri(self) -> str:
        """MLflow tracking URI clients use."""

    @abstractmethod
    def optuna_storage(self) -> str:
        """Optuna storage URL (or journal file path) shared by tuning workers."""

    @abstractmethod
    def tensorboard_logdir(self) -> str:
        """Log root every run writes TensorBoard events under."""

    def endpoints(self) -> Any:
        """The endpoint backend: deploy/list/scale/delete model endpoints (profiles override)."""
        raise NotSupportedError(f"endpoints are not available on the {self.name} profile")

    def smoke_args(self) -> tuple[list[str], dict[str, str]]:
        """pytest arguments and environment for `chiml smoke` on this profile."""
        raise NotSupportedError(f"`chiml smoke` is not available on the {self.name} profile")

