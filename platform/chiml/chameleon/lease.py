"""Blazar leases through python-chi: build the request, create, wait, extend, delete.

python-chi 1.2.10's quirks, handled here rather than discovered by users:

* ``Lease.submit`` logs Blazar's error and raises a generic ``ResourceError("Unable to make
  lease")``; the real reason is captured from python-chi's logger.
* its ``wait`` stops on ERROR *without* raising and polls once a minute; we poll ourselves and
  turn ERROR into Blazar's reason (failed events, missing resources).
* it has no extension call: extension is Blazar's lease update with ``prolong_for``.

Nodes of the same kind (e.g. the server and the CPU agents, both ``compute_cascadelake_r``) share
one reservation: Blazar returns reservations without the caller's labels, so groups are matched
back to reservations by what they select, which must therefore be unique per reservation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chiml.chameleon.auth import explain_auth_failure
from chiml.config.chameleon import ChameleonConfig
from chiml.errors import ChimlError, InvalidInputError, NotFoundError

GROUPS = ("server", "cpu_agents", "gpu_agents")
BLAZAR_DATE = "%Y-%m-%dT%H:%M:%S.%f"
WARN_WITHIN = timedelta(hours=48)


@dataclass(frozen=True)
class ReservationSpec:
    """One reservation of the lease and the node groups it serves."""

    kind: str  # node_type | node_name | flavor
    value: str
    amount: int
    groups: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.kind}={self.value}"


@dataclass(frozen=True)
class LeaseRequest:
    """Everything `up` will ask Blazar for; printed as is by `--dry-run`."""

    name: str
    site: str
    hours: int
    reservations: tuple[ReservationSpec, ...]
    floating_ips: int = 1

    @classmethod
    def from_config(cls, cfg: ChameleonConfig, name: str | None = None) -> LeaseRequest:
        """The request for ``cfg``; ``name`` is the deployment's unique name (see :func:`unique_name`)."""
        merged: dict[tuple[str, str], list[Any]] = {}
        for group in GROUPS:
            node_group = getattr(cfg, group)
            if node_group.count == 0:
                continue
            kind = "flavor" if cfg.is_kvm else ("node_name" if node_group.node_name else "node_type")
            value = node_group.selector()
            assert value is not None  # guaranteed by the config validators
            entry = merged.setdefault((kind, value), [0, []])
            entry[0] += node_group.count
            entry[1].append(group)
        specs = tuple(ReservationSpec(k, v, amount, tuple(groups)) for (k, v), (amount, groups) in merged.items())
        for spec in specs:
            if spec.kind == "node_name" and spec.amount != 1:
                raise InvalidInputError(
                    f"host {spec.value} is named by more than one node group: each needs its own host"
                )
        return cls(name=name or cfg.deployment, site=cfg.site, hours=cfg.lease_hours, reservations=specs)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "site": self.site,
            "duration_hours": self.hours,
            "reservations": [
                {"type": "flavor:instance" if s.kind == "flavor" else "physical:host", s.kind: s.value,
                 "amount": s.amount, "for": list(s.groups)}
                for s in self.reservations
            ]
            + [{"type": "virtual:floatingip", "network": "public", "amount": self.floating_ips, "for": ["server"]}],
        }


@dataclass
class LeaseInfo:
    """The lease as chiml keeps it in state."""

    id: str
    name: str
    status: str
    end: str | None = None  # ISO 8601, UTC
    reservations: dict[str, str] = field(default_factory=dict)  # group -> reservation id
    flavors: dict[str, str] = field(default_factory=dict)  # group -> reserved flavor id (KVM)
    floating_ip: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LeaseInfo:
        return cls(**data)

    def ends_at(self) -> datetime | None:
        return datetime.fromisoformat(self.end) if self.end else None

    def time_left(self, now: datetime | None = None) -> timedelta | None:
        end = self.ends_at()
        return None if end is None else end - (now or datetime.now(UTC))

    def expiry_warning(self, now: datetime | None = None) -> str | None:
        left = self.time_left(now)
        if left is None or left > WARN_WITHIN:
            return None
        if left <= timedelta(0):
            return f"lease {self.name} has ended: its instances are gone"
        hours = left.total_seconds() / 3600
        return (
            f"lease {self.name} ends in {hours:.1f} h ({self.end}); its instances are deleted then: "
            "`chiml lease extend --hours N` (possible within 48 h of the end, if the hosts are free)"
        )


def unique_name(deployment: str, user_id: str) -> str:
    """The name of a deployment's lease and resources: the configured name plus a per-user suffix.

    Members of one project see each other's leases, security groups and instances, and two of
    them keeping the default ``deployment`` would collide (Nova refuses duplicate security group
    names with a 409, and a lease found by name could be a teammate's). Blazar leases cannot be
    tagged, so the name is the marker, checked together with the lease's ``user_id``.
    """
    return f"{deployment}-{hashlib.sha256(user_id.encode()).hexdigest()[:6]}"


def _parse_blazar_date(value: str) -> datetime:
    for fmt in (BLAZAR_DATE, "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ChimlError(f"unexpected date from Blazar: {value!r}")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())


@contextmanager
def _capture_chi_log() -> Iterator[_Capture]:
    """python-chi logs Blazar's reason and raises a generic error: keep what it logs."""
    logger = logging.getLogger("chi.lease")
    handler = _Capture()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _error_reason(lease_json: dict[str, Any]) -> str:
    """Blazar's own account of a lease in ERROR: failed events, missing or changed resources."""
    parts: list[str] = []
    for event in lease_json.get("events") or []:
        if str(event.get("status", "")).upper() == "ERROR":
            parts.append(f"event {event.get('event_type')} failed")
    for reservation in lease_json.get("reservations") or []:
        if reservation.get("missing_resources"):
            parts.append(f"reservation {reservation.get('id')} is missing resources")
        if reservation.get("resources_changed"):
            parts.append(f"reservation {reservation.get('id')} had resources changed")
        status = str(reservation.get("status", "")).lower()
        if status and status not in ("active", "pending"):
            parts.append(f"reservation {reservation.get('id')} is {status}")
    if lease_json.get("degraded"):
        parts.append("lease is degraded")
    return "; ".join(parts) or "Blazar gives no further reason"


def _requested_flavor(reservation: dict[str, Any]) -> str | None:
    """The flavor a flavor reservation was made for, by name.

    Blazar's flavor plugin creates a private flavor per reservation (its id is the reservation
    id) and overwrites the reservation's ``flavor_id`` with it; the requested flavor survives
    only in ``resource_properties``, as the JSON of Nova's flavor (``id``, ``name``, ...).
    """
    try:
        source = json.loads(reservation.get("resource_properties") or "{}")
    except (TypeError, ValueError):
        return None
    return source.get("name") if isinstance(source, dict) else None


class LeaseClient:
    """The python-chi / Blazar boundary. Every OpenStack call chiml makes for leases is here."""

    def __init__(self, poll_interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.poll_interval_s = poll_interval_s
        self.clock = clock

    # python-chi is heavy (pandas, ipywidgets): imported on first use only.
    @staticmethod
    def _chi() -> Any:
        import chi.lease

        return chi.lease

    def _blazar(self) -> Any:
        return self._chi().blazar()

    def _raw(self, lease_id: str) -> dict[str, Any] | None:
        from blazarclient.exception import BlazarClientException

        try:
            return self._blazar().lease.get(lease_id)
        except BlazarClientException as err:
            code = getattr(err, "kwargs", {}).get("code", getattr(err, "code", None))
            if code == 404:
                return None
            raise self._wrap(err, "reading the lease") from None

    def _wrap(self, err: Exception, doing: str) -> ChimlError:
        message = str(err).strip() or err.__class__.__name__
        return ChimlError(f"Blazar failed {doing}: {message}", hint=explain_auth_failure(message))

    def whoami(self) -> str:
        """The Keystone user id the credentials authenticate as (one token request)."""
        import chi.context

        try:
            user_id = chi.context.session().get_user_id()
        except Exception as err:
            raise ChimlError(f"cannot authenticate to Keystone: {err}",
                             hint=explain_auth_failure(str(err))) from None
        if not user_id:
            raise ChimlError("Keystone returned no user id for these credentials")
        return str(user_id)

    def find_by_name(self, name: str, user_id: str) -> dict[str, Any] | None:
        """A live (not TERMINATED/DELETED) lease of ``user_id`` with this name, e.g. left by an
        interrupted `up`. Leases of other project members are never returned, whatever their name."""
        try:
            leases = self._blazar().lease.list()
        except Exception as err:
            raise self._wrap(err, "listing leases") from None
        gone = ("TERMINATED", "DELETED")
        live = [lease for lease in leases if lease.get("name") == name and lease.get("status") not in gone
                and lease.get("user_id") == user_id]
        if len(live) > 1:
            ids = ", ".join(lease["id"] for lease in live)
            raise ChimlError(f"several live leases are named {name}: {ids}", hint="delete the extra ones in the GUI")
        return live[0] if live else None

    def create(self, request: LeaseRequest) -> str:
        """Submit the lease without waiting; return its id. Raises with Blazar's real reason."""
        chi_lease = self._chi()
        from chi.exception import CHIValueError, ResourceError

        lease = chi_lease.Lease(name=request.name, duration=timedelta(hours=request.hours))
        try:
            for spec in request.reservations:
                if spec.kind == "flavor":
                    lease.add_flavor_reservation(name=spec.value, amount=spec.amount)
                elif spec.kind == "node_name":
                    lease.add_node_reservation(amount=spec.amount, node_name=spec.value)
                else:
                    lease.add_node_reservation(amount=spec.amount, node_type=spec.value)
            lease.add_fip_reservation(amount=request.floating_ips)
        except CHIValueError as err:
            raise InvalidInputError(f"invalid lease request: {err}") from None
        except Exception as err:  # Nova/Neutron lookups (flavor by name, public network)
            raise self._wrap(err, "preparing the lease") from None
        with _capture_chi_log() as log:
            try:
                lease.submit(wait_for_active=False, idempotent=False)
            except ResourceError as err:
                reason = "; ".join(log.messages) or str(err)
                raise ChimlError(
                    f"Blazar refused lease {request.name} at {request.site}: {reason}",
                    hint=explain_auth_failure(reason)
                    or "try fewer nodes, another node_type, or a later start (see the Chameleon host calendar)",
                ) from None
            except Exception as err:
                raise self._wrap(err, "creating the lease") from None
        if not lease.id:
            raise ChimlError(f"Blazar returned no id for lease {request.name}")
        return str(lease.id)

    def wait_active(
        self, lease_id: str, timeout_s: float, on_status: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Poll until ACTIVE; ERROR and timeouts raise ChimlError with Blazar's reason."""
        deadline = self.clock() + timeout_s
        status = "UNKNOWN"
        while True:
            raw = self._raw(lease_id)
            if raw is None:
                raise NotFoundError(f"lease {lease_id} disappeared while starting (deleted elsewhere?)")
            status = str(raw.get("status", "UNKNOWN")).upper()
            if on_status:
                on_status(status)
            if status == "ACTIVE":
                return raw
            if status in ("ERROR", "TERMINATED", "DELETED"):
                raise ChimlError(f"lease {raw.get('name')} went to {status}: {_error_reason(raw)}")
            if self.clock() >= deadline:
                raise ChimlError(
                    f"lease {raw.get('name')} is still {status} after {timeout_s:.0f} s",
                    hint="raise chameleon.lease_timeout_s, or check the lease in the Chameleon GUI",
                )
            time.sleep(self.poll_interval_s)

    def describe(self, raw: dict[str, Any], request: LeaseRequest) -> LeaseInfo:
        """Map Blazar's reservations back to node groups; look up the reserved floating IP and flavors."""
        chi_lease = self._chi()
        lease = chi_lease.Lease(lease_json=raw)
        info = LeaseInfo(
            id=raw["id"],
            name=raw["name"],
            status=str(raw.get("status", "")).upper(),
            end=_parse_blazar_date(raw["end_date"]).isoformat(),
        )
        hosts = [r for r in raw.get("reservations") or [] if r.get("resource_type") == "physical:host"]
        flavors = [r for r in raw.get("reservations") or [] if r.get("resource_type") == "flavor:instance"]
        for spec in request.reservations:
            if spec.kind == "flavor":
                match = [r for r in flavors if _requested_flavor(r) == spec.value]
            else:
                needle = json.dumps(["==", f"${spec.kind}", spec.value])
                match = [r for r in hosts if needle in str(r.get("resource_properties", ""))]
            if len(match) != 1:
                raise ChimlError(f"lease {info.name}: cannot find the reservation for {spec.key} in Blazar's answer")
            for group in spec.groups:
                info.reservations[group] = match[0]["id"]
        try:
            if flavors:
                from chi import server

                for group, reservation_id in info.reservations.items():
                    reserved = server.list_flavors(reservation_id=reservation_id)
                    if not reserved:
                        raise ChimlError(f"lease {info.name}: no reserved flavor for reservation {reservation_id}")
                    info.flavors[group] = reserved[0].id
            addresses = lease.get_reserved_floating_ips()
        except ChimlError:
            raise
        except Exception as err:
            raise self._wrap(err, "looking up the reserved floating IP") from None
        if not addresses:
            raise ChimlError(f"lease {info.name} is ACTIVE but holds no floating IP")
        info.floating_ip = addresses[0]
        return info

    def status(self, lease_id: str) -> tuple[str, str | None] | None:
        """(status, end ISO) or None when Blazar no longer knows the lease."""
        raw = self._raw(lease_id)
        if raw is None:
            return None
        return str(raw.get("status", "")).upper(), _parse_blazar_date(raw["end_date"]).isoformat()

    def extend(self, lease_id: str, hours: int) -> str:
        """Prolong the lease (python-chi has no call for it); returns the new end (ISO)."""
        from blazarclient.exception import BlazarClientException

        try:
            updated = self._blazar().lease.update(lease_id, prolong_for=f"{hours}h")
        except BlazarClientException as err:
            message = str(err)
            raise ChimlError(
                f"Blazar refused to extend the lease by {hours} h: {message}",
                hint=explain_auth_failure(message)
                or "extension is possible within 48 h of the end, up to 7 days, only if the hosts are free",
            ) from None
        raw = updated if isinstance(updated, dict) and "end_date" in updated else self._raw(lease_id)
        if raw is None:
            raise NotFoundError(f"lease {lease_id} is gone")
        return _parse_blazar_date(raw["end_date"]).isoformat()

    def delete(self, lease_id: str) -> bool:
        """Delete the lease; False if Blazar no longer has it."""
        from blazarclient.exception import BlazarClientException

        try:
            self._blazar().lease.delete(lease_id)
        except BlazarClientException as err:
            code = getattr(err, "kwargs", {}).get("code", getattr(err, "code", None))
            if code == 404:
                return False
            raise self._wrap(err, f"deleting lease {lease_id}") from None
        return True
