"""The endpoint backend interface every profile implements.

The local profile runs endpoints as supervised processes behind one HAProxy front each
(:mod:`chiml.serving.local`); the Kubernetes and Chameleon profiles as KServe
InferenceServices (:mod:`chiml.kube.endpoints`). The CLI and the SDK only use this interface, so
``chiml deploy`` / ``Platform.deploy`` behave the same everywhere: deploying onto an existing
name is a rolling update, and the replica count is either fixed or autoscaled between KServe's
``minReplicas`` and ``maxReplicas``.
"""

from __future__ import annotations

import builtins
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from chiml.errors import InvalidInputError, NotSupportedError
from chiml.progress import Progress, silent

EndpointStatus = Literal["ready", "starting", "updating", "failed", "stopped", "unknown"]
MAX_REPLICAS = 64

# A DNS-1123 label short enough for KServe (the InferenceService name becomes host names and
# label values with suffixes), so a name that works locally also works on Kubernetes.
NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")


def check_name(name: str) -> str:
    """Validate an endpoint name (lowercase letters, digits, '-'; 1-40 characters)."""
    if not NAME_PATTERN.match(name):
        raise InvalidInputError(
            f"invalid endpoint name {name!r}",
            hint="use 1-40 lowercase letters, digits or '-', starting with a letter (it must be a DNS label)",
        )
    return name


@dataclass(frozen=True)
class Scaling:
    """How many replicas: fixed (``min == max``) or autoscaled between the two, as KServe says it.

    ``metric``/``target``: what the autoscaler keeps per replica (KServe's ``scaleMetric`` /
    ``scaleTarget``): ``concurrency`` (in-flight requests) or ``cpu`` (percent of a core) on the
    local profile, ``cpu`` (percent of the request) or ``memory`` on a cluster (HPA).
    """

    min_replicas: int
    max_replicas: int
    metric: str | None = None
    target: int | None = None

    @property
    def autoscaled(self) -> bool:
        return self.max_replicas > self.min_replicas

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def resolve_scaling(
    replicas: int | None,
    min_replicas: int | None,
    max_replicas: int | None,
    metric: str | None,
    target: int | None,
    *,
    default_replicas: int,
    metrics: tuple[str, ...],
    floor: int = 1,
) -> Scaling | None:
    """The :class:`Scaling` asked for by flags (``None``: nothing asked, keep what is there).

    ``--replicas N`` is the same as ``--min-replicas N --max-replicas N``; a metric or target
    without a range needs ``--max-replicas``. ``metrics``: those this profile can scale on
    (the first is the default).
    """
    if replicas is None and min_replicas is None and max_replicas is None and metric is None and target is None:
        return None
    if replicas is not None and (min_replicas is not None or max_replicas is not None):
        raise InvalidInputError("give either --replicas or --min-replicas/--max-replicas, not both")
    low = replicas if replicas is not None else (min_replicas if min_replicas is not None else default_replicas)
    high = replicas if replicas is not None else (max_replicas if max_replicas is not None else max(low, 1))
    if not floor <= low <= MAX_REPLICAS or not 1 <= high <= MAX_REPLICAS:
        raise InvalidInputError(f"replicas must be between {floor} and {MAX_REPLICAS} (got {low}-{high})")
    if low > high:
        raise InvalidInputError(f"--min-replicas {low} is more than --max-replicas {high}")
    if metric is not None and metric not in metrics:
        raise InvalidInputError(f"unknown scale metric {metric!r}: choose one of {', '.join(metrics)}")
    if target is not None and target < 1:
        raise InvalidInputError("--scale-target must be at least 1")
    if low == high:
        if metric is not None or target is not None:
            raise InvalidInputError(
                "--scale-metric/--scale-target need an autoscaling range",
                hint="add --max-replicas above --min-replicas",
            )
        return Scaling(low, high)
    return Scaling(low, high, metric or metrics[0], target)


@dataclass
class Endpoint:
    """One deployed model endpoint, as `chiml endpoints list/describe` show it."""

    name: str
    model_uri: str
    runtime: str
    #: The one URL clients send V1/V2 requests to (local: the endpoint's front).
    url: str | None
    replicas: int
    workers: int
    status: EndpointStatus = "unknown"
    #: Local profile: the front's port first, then every replica's.
    ports: list[int] = field(default_factory=list)
    #: Every replica's own base URL (local: one per process, behind ``url``); a cluster: ``[url]``.
    urls: list[str] = field(default_factory=list)
    detail: str = ""
    created: str = ""
    min_replicas: int = 1
    max_replicas: int = 1
    scale_metric: str | None = None
    scale_target: int | None = None
    #: Per replica: id, port, url, front state (UP/DOWN/DRAIN) and in-flight requests (local).
    replica_info: list[dict[str, Any]] = field(default_factory=list)
    #: Scaling decisions, newest last: {"time", "from", "to", "why"}.
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class EndpointBackend(ABC):
    """deploy / update / list / get / scale / delete model endpoints on one platform."""

    @abstractmethod
    def deploy(
        self,
        model_uri: str,
        name: str,
        runtime: str | None = None,
        replicas: int | None = None,
        workers: int | None = None,
        *,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        scale_metric: str | None = None,
        scale_target: int | None = None,
        progress: Progress = silent,
    ) -> Endpoint:
        """Serve ``model_uri`` under ``name`` and wait until it answers; ``None`` means the
        ``serving:`` config default. An existing endpoint of that name is updated in place (a
        rolling update, no failed request). Raises :class:`~chiml.errors.ChimlError` and leaves
        nothing behind (or the endpoint as it was) on failure."""

    def update(
        self,
        name: str,
        model_uri: str,
        runtime: str | None = None,
        workers: int | None = None,
        *,
        progress: Progress = silent,
    ) -> Endpoint:
        """Serve another model (version) on an existing endpoint: a rolling update."""
        self.get(name)  # NotFoundError for an unknown name
        return self.deploy(model_uri, name, runtime=runtime, workers=workers, progress=progress)

    @abstractmethod
    def list(self) -> list[Endpoint]:
        """Every endpoint with its live status."""

    @abstractmethod
    def get(self, name: str) -> Endpoint:
        """One endpoint; :class:`~chiml.errors.NotFoundError` when there is none of that name."""

    @abstractmethod
    def scale(
        self,
        name: str,
        replicas: int | None = None,
        *,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        scale_metric: str | None = None,
        scale_target: int | None = None,
        progress: Progress = silent,
    ) -> Endpoint:
        """Fix the number of replicas, or set an autoscaling range; wait for new ones to answer."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Stop the endpoint and remove everything it used (processes/resources, state, files)."""

    @abstractmethod
    def url(self, name: str) -> str:
        """Base URL clients send V1/V2 requests to (``<url>/v2/models/<name>/infer``)."""

    def urls(self, name: str) -> builtins.list[str]:
        """Every replica's own base URL, for addressing one replica (diagnostics, tests); by default
        the one :meth:`url`. Clients send to :meth:`url`: the endpoint's front or ingress."""
        return [self.url(name)]

    def auth(self) -> tuple[str, str] | None:
        """Basic-auth credentials clients send to reach the endpoints (none by default)."""
        return None

    def log_file(self, name: str, replica: int | None = None) -> Path:
        """The server log of one replica (by id; the first replica's when None), where this
        backend keeps it on this machine."""
        raise NotSupportedError(
            "endpoint logs are read with kubectl on this profile",
            hint=f"kubectl logs -l serving.kserve.io/inferenceservice={name}",
        )

    def manifests(
        self,
        model_uri: str,
        name: str,
        runtime: str | None = None,
        replicas: int | None = None,
        workers: int | None = None,
        *,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        scale_metric: str | None = None,
        scale_target: int | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """What :meth:`deploy` would send to a cluster, built without contacting it (``--dry-run``)."""
        raise NotSupportedError("--dry-run is for cluster profiles: on this profile an endpoint is local processes")

    def front_log_file(self, name: str) -> Path:
        """The log of the endpoint's front (its one URL), where this backend runs one."""
        raise NotSupportedError(
            "this profile's endpoints have no front of chiml's: the ingress controller's logs hold their requests",
            hint="kubectl logs -n kube-system -l app.kubernetes.io/name=traefik",
        )

    def wait_all_ready(self, progress: Progress = silent) -> None:  # noqa: B027 (an optional hook)
        """After the platform starts: wait for the endpoints it restarted (nothing by default)."""
