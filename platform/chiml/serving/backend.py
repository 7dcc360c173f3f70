"""The endpoint backend interface every profile implements.

The local profile runs endpoints as supervised processes (:mod:`chiml.serving.local`); the
Kubernetes and Chameleon profiles as KServe InferenceServices. The CLI and the SDK only use
this interface, so ``chiml deploy`` / ``Platform.deploy`` behave the same everywhere.
"""

from __future__ import annotations

import builtins
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from chiml.errors import ChimlError, NotSupportedError
from chiml.progress import Progress, silent

EndpointStatus = Literal["ready", "starting", "failed", "stopped", "unknown"]

# A DNS-1123 label short enough for KServe (the InferenceService name becomes host names and
# label values with suffixes), so a name that works locally also works on Kubernetes.
NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")


def check_name(name: str) -> str:
    """Validate an endpoint name (lowercase letters, digits, '-'; 1-40 characters)."""
    if not NAME_PATTERN.match(name):
        raise ChimlError(
            f"invalid endpoint name {name!r}",
            hint="use 1-40 lowercase letters, digits or '-', starting with a letter (it must be a DNS label)",
        )
    return name


@dataclass
class Endpoint:
    """One deployed model endpoint, as `chiml endpoints list` shows it."""

    name: str
    model_uri: str
    runtime: str
    url: str | None
    replicas: int
    workers: int
    status: EndpointStatus = "unknown"
    ports: list[int] = field(default_factory=list)
    #: Every replica's base URL (local profile: one per process); ``url`` is the first one.
    urls: list[str] = field(default_factory=list)
    detail: str = ""
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class EndpointBackend(ABC):
    """deploy / list / get / scale / delete model endpoints on one platform."""

    @abstractmethod
    def deploy(
        self,
        model_uri: str,
        name: str,
        runtime: str | None = None,
        replicas: int | None = None,
        workers: int | None = None,
    ) -> Endpoint:
        """Start an endpoint serving ``model_uri`` and wait until it answers; ``None`` means the
        ``serving:`` config default. Raises :class:`ChimlError` and leaves nothing behind on failure."""

    @abstractmethod
    def list(self) -> list[Endpoint]:
        """Every endpoint with its live status."""

    @abstractmethod
    def get(self, name: str) -> Endpoint:
        """One endpoint; :class:`ChimlError` when there is none of that name."""

    @abstractmethod
    def scale(self, name: str, replicas: int) -> Endpoint:
        """Change the number of replicas and wait for new ones to answer."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Stop the endpoint and remove everything it used (processes/resources, state, files)."""

    @abstractmethod
    def url(self, name: str) -> str:
        """Base URL clients send V1/V2 requests to (``<url>/v2/models/<name>/infer``)."""

    def urls(self, name: str) -> builtins.list[str]:
        """Every replica's base URL when clients spread requests themselves (one process each
        locally); by default the one :meth:`url` (a cluster balances behind it)."""
        return [self.url(name)]

    def auth(self) -> tuple[str, str] | None:
        """Basic-auth credentials clients send to reach the endpoints (none by default)."""
        return None

    def log_file(self, name: str, replica: int = 0) -> Path:
        """The server log of one replica, where this backend keeps it on this machine."""
        raise NotSupportedError(
            "endpoint logs are read with kubectl on this profile",
            hint=f"kubectl logs -l serving.kserve.io/inferenceservice={name}",
        )

    def wait_all_ready(self, progress: Progress = silent) -> None:  # noqa: B027 (an optional hook)
        """After the platform starts: wait for the endpoints it restarted (nothing by default)."""
