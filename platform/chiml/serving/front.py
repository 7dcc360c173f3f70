"""The one URL of a local endpoint: an HAProxy process in front of the endpoint's replicas.

Why HAProxy: it is the well-kept load balancer that does, in C and for a few tens of
microseconds per request, everything a local endpoint needs and a hand-written front would
have to grow: active health checks (``GET /v2/health/ready``), passive ones (the first refused
connection marks a replica down before the next check), retries of requests that never reached
a model (refused connections, a replica that died before answering: replaying an inference
request has no side effect), least-in-flight balancing, and a runtime API on a unix socket to
add, drain and remove replicas without a reload, plus per-replica in-flight counts that the
autoscaler reads. ``benchmarks/serving_front.py`` measures what it costs.

One HAProxy per endpoint, supervised like every other program (``endpoint-<name>-front``),
listening on 127.0.0.1 only. Its configuration file always lists the replicas the state file
lists, so a restart (``down``/``up``, a crash) comes back with the right servers; live changes go
through the runtime API *and* the file, never through a reload.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chiml.errors import ChimlError, NotSupportedError, UnreachableError

HOST = "127.0.0.1"
BACKEND = "replicas"
MIN_VERSION = (2, 6)  # dynamic servers with health checks through the runtime API
INSTALL_HINT = "install HAProxy 2.6 or newer: `apt-get install haproxy` (Debian 12, Ubuntu 24.04), " \
    "`brew install haproxy` (macOS), or `make serving-deps`"
# Where package managers put it when it is not on PATH (Debian: /usr/sbin, not on a user's PATH).
_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/bin", "/opt/homebrew/sbin")
# AF_UNIX socket paths are limited to ~107 bytes, and HAProxy's `stats socket` to 97.
_MAX_SOCKET_PATH = 97
# Every replica gets these server options, in the file and when added at run time (HAProxy does
# not apply `default-server` to servers added through the runtime API): a check every second
# (250 ms while a state change is pending), down after 2 failed checks or at the first refused
# connection of real traffic, up again after 1 good check.
SERVER_OPTIONS = (
    "check inter 1s fastinter 250ms downinter 1s fall 2 rise 1 observe layer4 error-limit 1 on-error mark-down"
)


_REFUSALS = ("unknown", "error", "not found", "no such", "invalid", "require", "cannot")


def server_name(replica_id: int) -> str:
    return f"r{replica_id}"


@dataclass(frozen=True)
class ReplicaAddress:
    """One server of the front: the replica's id and loopback port."""

    id: int
    port: int


@dataclass(frozen=True)
class ServerStats:
    """What the front knows of one replica right now."""

    id: int
    status: str  # UP, DOWN, DRAIN, MAINT, "UP 1/2" (going down)...
    in_flight: int  # requests being served by it now
    port: int | None = None
    served: int = 0  # requests sent to it since the front started

    @property
    def serving(self) -> bool:
        return self.status.startswith("UP")


@dataclass(frozen=True)
class FrontStats:
    """The whole front: its replicas and the requests waiting for one."""

    servers: list[ServerStats]
    queued: int

    @property
    def in_flight(self) -> int:
        return sum(server.in_flight for server in self.servers) + self.queued


# ---------------------------------------------------------------------- the binary
def find_haproxy() -> str:
    """Path of an HAProxy new enough for chiml; :class:`NotSupportedError` (one line) otherwise."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path=os.pathsep.join(_EXTRA_DIRS))
    if found is None:
        raise NotSupportedError("local endpoints need HAProxy as their front, and none was found", hint=INSTALL_HINT)
    version = haproxy_version(found)
    if version < MIN_VERSION:
        raise NotSupportedError(
            f"HAProxy {'.'.join(map(str, version))} at {found} is too old for chiml's endpoint front",
            hint=INSTALL_HINT,
        )
    return found


def haproxy_version(binary: str) -> tuple[int, int]:
    try:
        result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except OSError as err:
        raise NotSupportedError(f"cannot run {binary}: {err.strerror or err}", hint=INSTALL_HINT) from None
    match = re.search(r"version (\d+)\.(\d+)", result.stdout)
    if match is None:
        raise NotSupportedError(f"{binary} -v did not print an HAProxy version", hint=INSTALL_HINT)
    return int(match[1]), int(match[2])


# ---------------------------------------------------------------------- configuration
def socket_path(folder: Path) -> Path:
    """The runtime API socket of a front whose files live in ``folder`` (short enough for AF_UNIX)."""
    path = folder / "front.sock"
    if len(str(path)) > _MAX_SOCKET_PATH:
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"chiml-front-{digest}.sock"
    return path


def render_config(port: int, replicas: list[ReplicaAddress], admin_socket: Path, server_timeout_s: float) -> str:
    """haproxy.cfg of one endpoint's front."""
    servers = "".join(
        f"    server {server_name(r.id)} {HOST}:{r.port} {SERVER_OPTIONS}\n"
        for r in sorted(replicas, key=lambda r: r.id)
    )
    timeout = max(1, round(server_timeout_s))
    return f"""# written by chiml: the front of one local endpoint (the state file is the truth; edits are lost)
global
    maxconn 4096
    stats socket {admin_socket} mode 600 level admin
    log stdout format raw local0 info
    hard-stop-after 30s

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 2s
    timeout client 5m
    timeout http-keep-alive 60s
    timeout http-request 30s
    timeout server {timeout}s
    timeout queue 30s
    timeout check 3s
    # an inference request may be replayed: retry what never got an answer, on another replica;
    # a retry needs the whole request in HAProxy's buffer, so wait for the body before forwarding
    option http-buffer-request
    retries 3
    retry-on conn-failure empty-response 503
    option redispatch 1

frontend endpoint
    bind {HOST}:{port}
    default_backend {BACKEND}

backend {BACKEND}
    balance leastconn
    option httpchk GET /v2/health/ready
    option log-health-checks
    http-check expect status 200
{servers}"""


def check_config(binary: str, path: Path) -> None:
    """``haproxy -c``: a config HAProxy would refuse is an error here, before anything starts."""
    result = subprocess.run([binary, "-c", "-q", "-f", str(path)], capture_output=True, text=True, timeout=30,
                            check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ChimlError(f"HAProxy refused the front configuration {path}: {detail[-1] if detail else 'no reason'}")


# ---------------------------------------------------------------------- the runtime API
class FrontApi:
    """HAProxy's runtime API (``stats socket``) of one front."""

    def __init__(self, admin_socket: Path, timeout_s: float = 5.0) -> None:
        self.socket = admin_socket
        self.timeout_s = timeout_s

    def command(self, line: str) -> str:
        """Send one command; HAProxy answers and closes the connection."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.timeout_s)
                conn.connect(str(self.socket))
                conn.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except OSError as err:
            raise UnreachableError(
                f"the endpoint front is not answering on {self.socket} ({err.__class__.__name__})"
            ) from None
        return b"".join(chunks).decode(errors="replace")

    def available(self) -> bool:
        try:
            self.command("show info")
        except UnreachableError:
            return False
        return True

    def _checked(self, line: str) -> None:
        self._check_answer(line, self.command(line).strip())

    @staticmethod
    def _check_answer(line: str, answer: str) -> None:
        # success is an empty answer or an informative line; failures name themselves
        if answer and any(word in answer.lower() for word in _REFUSALS):
            raise ChimlError(f"the endpoint front refused `{line}`: {answer.splitlines()[0]}")

    def add(self, replica: ReplicaAddress) -> None:
        """Add a replica (already answering) and send it traffic at once."""
        server = f"{BACKEND}/{server_name(replica.id)}"
        answer = self.command(f"add server {server} {HOST}:{replica.port} {SERVER_OPTIONS}").strip()
        # "already exists": a front restarted meanwhile read it from its configuration file
        if "already exists" not in answer.lower():
            self._check_answer(f"add server {server}", answer)
            self._checked(f"enable health {server}")
        self._checked(f"set server {server} state ready")

    def drain(self, replica_id: int) -> None:
        """No new requests for this replica; those it is serving finish."""
        self._checked(f"set server {BACKEND}/{server_name(replica_id)} state drain")

    def remove(self, replica_id: int) -> None:
        server = f"{BACKEND}/{server_name(replica_id)}"
        self._checked(f"set server {server} state maint")
        # HAProxy refuses to delete a server that still holds idle connections for a moment
        deadline = time.monotonic() + 10
        while True:
            answer = self.command(f"del server {server}").strip()
            if "deleted" in answer.lower() or "no such server" in answer.lower():
                return
            if time.monotonic() > deadline:
                raise ChimlError(f"the endpoint front kept {server_name(replica_id)}: {answer.splitlines()[0]}")
            time.sleep(0.1)

    def stats(self) -> FrontStats:
        """In-flight requests and state of every replica (``show stat`` of the backend)."""
        text = self.command(f"show stat {BACKEND} 6 -1")  # backend (2) + servers (4)
        rows = list(csv.DictReader(io.StringIO(text.lstrip("# "))))
        servers: list[ServerStats] = []
        queued = 0
        for row in rows:
            name = row.get("svname", "")
            if name == "BACKEND":
                queued = int(row.get("qcur") or 0)
            elif re.fullmatch(r"r\d+", name):
                address = row.get("addr") or ""
                port = int(address.rsplit(":", 1)[1]) if ":" in address else None
                servers.append(ServerStats(int(name[1:]), row.get("status", ""), int(row.get("scur") or 0), port,
                                           int(row.get("stot") or 0)))
        return FrontStats(sorted(servers, key=lambda s: s.id), queued)

    def wait_idle(self, replica_id: int, timeout_s: float) -> bool:
        """Wait until a draining replica serves no request; False when it still does at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            server = next((s for s in self.stats().servers if s.id == replica_id), None)
            if server is None or server.in_flight == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
