"""Endpoints on the local profile: supervised ``python -m chiml_serving`` processes.

Each replica of an endpoint is one supervisord program ``endpoint-<name>-<i>`` listening on
its own loopback port from ``local.endpoint_ports``; the endpoint's URL is replica 0's, and
``chiml.serving.client.predict`` spreads requests over all replicas (round robin). The model
is downloaded once into ``CHIML_HOME/endpoints/<name>/model``, so an endpoint never needs
MLflow at run time, and because supervisord's program files persist, ``chiml down`` then
``chiml up`` brings every endpoint back by itself. The registry of endpoints is the ``endpoints``
key of the state file.

Every step that adds something (state entry, folder, program) is undone when a later step
fails or the user interrupts, so a failed deploy leaves nothing behind; the error carries the
last lines of the endpoint's log.
"""

from __future__ import annotations

import builtins
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from chiml.errors import ChimlError
from chiml.local.supervisor import Program, Supervisor
from chiml.serving.artifacts import download_model, is_mlflow_model
from chiml.serving.backend import Endpoint, EndpointBackend, EndpointStatus, check_name

STATE_KEY = "endpoints"
HOST = "127.0.0.1"
_FAILED_STATES = {"BACKOFF", "FATAL", "EXITED"}
_POLL_S = 0.25
_console = Console(stderr=True)


def program_name(name: str, replica: int) -> str:
    return f"endpoint-{name}-{replica}"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


class LocalEndpoints(EndpointBackend):
    """The local profile's endpoint backend (see the module docstring)."""

    def __init__(self, profile: Any) -> None:
        self.profile = profile
        self.supervisor: Supervisor = profile.supervisor
        self.state = profile.state
        self.home = Path(profile.home)
        self.settings = profile.config.serving
        self.root = self.home / "endpoints"

    # ------------------------------------------------------------------ helpers
    def _records(self) -> dict[str, dict[str, Any]]:
        return dict(self.state.get(STATE_KEY) or {})

    def _record(self, name: str) -> dict[str, Any]:
        record = self._records().get(name)
        if record is None:
            raise ChimlError(f"no endpoint named {name!r}", hint="see `chiml endpoints list`")
        return record

    def _allocate(self, doc: dict[str, Any], count: int) -> list[int]:
        """``count`` ports from the range, unused by other endpoints and free right now."""
        used = {port for record in (doc.get(STATE_KEY) or {}).values() for port in record.get("ports", [])}
        port_range = self.profile.config.local.endpoint_port_range()
        ports: list[int] = []
        for port in port_range:
            if port not in used and _port_free(port):
                ports.append(port)
                if len(ports) == count:
                    return ports
        raise ChimlError(
            f"no free port left in local.endpoint_ports ({port_range.start}-{port_range.stop - 1})",
            hint="delete unused endpoints or widen local.endpoint_ports in chiml.yaml",
        )

    def _interpreter(self, runtime: str) -> str:
        """DeepSparse pins numpy<2 and onnx<1.15: its endpoints run in their own environment."""
        if runtime != "deepsparse":
            return sys.executable
        from chiml.optimize import deepsparse_env

        return str(deepsparse_env.ensure(self.profile.home))

    def _program(self, name: str, record: dict[str, Any], replica: int) -> Program:
        return Program(
            name=program_name(name, replica),
            command=[
                *(self._interpreter(record["runtime"]), "-m", "chiml_serving", "--runtime", record["runtime"]),
                *("--model-name", name, "--model-dir", str(self.root / name / "model")),
                *("--http-port", str(record["ports"][replica]), "--workers", str(record["workers"])),
                *("--host", HOST),
            ],
            directory=self.root / name,
            # WARNING keeps kserve's per-request trace lines out of the log (access lines stay).
            environment={"PYTHONUNBUFFERED": "1", "KSERVE_LOGLEVEL": "WARNING"},
            priority=900,  # after the platform's own services
            # A model load that crashes within 30 s counts as a failed start (supervisord backs
            # off, then gives up) instead of a restart loop.
            startsecs=30,
        )

    def _url(self, port: int) -> str:
        return f"http://{HOST}:{port}"

    def _log_tail(self, program: str, lines: int = 8) -> list[str]:
        path = self.supervisor.log_file(program)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-lines:]

    def _remove_logs(self, program: str) -> None:
        log = self.supervisor.log_file(program)
        for path in log.parent.glob(log.name + "*"):  # the log and its rotated backups
            path.unlink(missing_ok=True)

    def _replica_status(self, name: str, port: int, replica: int) -> EndpointStatus:
        info = self.supervisor.program_info(program_name(name, replica))
        if info is None:
            return "stopped"
        if info.get("statename") in _FAILED_STATES:
            return "failed"
        if info.get("statename") not in ("RUNNING", "STARTING"):
            return "stopped"
        try:
            response = httpx.get(f"{self._url(port)}/v2/models/{name}/ready", timeout=1.0)
        except httpx.HTTPError:
            return "starting"
        return "ready" if response.status_code == 200 else "starting"

    def _endpoint(self, name: str, record: dict[str, Any], live: bool = True) -> Endpoint:
        ports = list(record.get("ports", []))
        urls = [self._url(port) for port in ports]
        if record.get("status") == "deploying":
            status: EndpointStatus = "starting"
        elif not live:
            status = "unknown"
        elif not self.supervisor.is_running():
            status = "stopped"
        else:
            states = [self._replica_status(name, port, i) for i, port in enumerate(ports)]
            for candidate in ("failed", "stopped", "starting"):
                if candidate in states:
                    status = candidate  # type: ignore[assignment]
                    break
            else:
                status = "ready"
        return Endpoint(
            name=name,
            model_uri=record["model_uri"],
            runtime=record["runtime"],
            url=urls[0] if urls else None,
            replicas=len(ports),
            workers=record["workers"],
            status=status,
            ports=ports,
            urls=urls,
            detail=record.get("source", ""),
            created=record.get("created", ""),
        )

    def _require_running(self) -> None:
        if not self.supervisor.is_running():
            raise ChimlError("the local platform is not running", hint="start it with `chiml up`")

    # ------------------------------------------------------------------ waiting
    def _wait_ready(self, name: str, ports: dict[int, int], timeout: float, spinner: bool = True) -> None:
        """Wait until every replica (index -> port) answers ready; raise with its log tail.

        ``spinner=False`` when a caller (``chiml up``) already shows its own progress: rich
        allows one live display at a time."""
        pending = dict(ports)
        first_pid: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        total = len(ports)
        status = _console.status(f"starting endpoint {name}...") if spinner else nullcontext(None)
        with httpx.Client(timeout=2.0) as client, status as live:
            while pending:
                for replica, port in list(pending.items()):
                    program = program_name(name, replica)
                    info = self.supervisor.program_info(program) or {}
                    pid = info.get("pid") or 0
                    if pid:
                        first_pid.setdefault(replica, pid)
                    crashed = info.get("statename") in _FAILED_STATES or (pid and pid != first_pid.get(replica))
                    if crashed:
                        raise self._start_error(name, program, "exited while loading the model")
                    try:
                        response = client.get(f"{self._url(port)}/v2/models/{name}/ready")
                    except httpx.HTTPError:
                        continue
                    if response.status_code == 200:
                        del pending[replica]
                if live is not None:
                    live.update(f"starting endpoint {name}: {total - len(pending)}/{total} replicas ready")
                if not pending:
                    break
                if time.monotonic() > deadline:
                    replica = next(iter(pending))
                    raise self._start_error(
                        name, program_name(name, replica), f"did not answer within {timeout:.0f}s"
                    )
                time.sleep(_POLL_S)

    def _start_error(self, name: str, program: str, what: str) -> ChimlError:
        tail = self._log_tail(program)
        reason = next((line for line in reversed(tail) if line.startswith("chiml-serving: cannot serve")), None)
        message = f"endpoint {name} {what}"
        if reason:
            message += f": {reason.removeprefix('chiml-serving: ')}"
        hint = "last log lines: " + " | ".join(tail[-5:]) if tail else None
        return ChimlError(message, hint=hint)

    # ------------------------------------------------------------------ cleanup
    def _teardown(self, name: str, replicas: builtins.list[int], *, remove_files: bool) -> None:
        for replica in replicas:
            program = program_name(name, replica)
            self.supervisor.remove_program(program)
            self._remove_logs(program)
        if remove_files:
            shutil.rmtree(self.root / name, ignore_errors=True)

    def _undo_on_failure(self, undo: Callable[[], None], action: Callable[[], Any]) -> Any:
        try:
            return action()
        except BaseException:  # Ctrl-C included: never leave a half-made endpoint
            undo()
            raise

    # ------------------------------------------------------------------ the interface
    def deploy(
        self,
        model_uri: str,
        name: str,
        runtime: str | None = None,
        replicas: int | None = None,
        workers: int | None = None,
    ) -> Endpoint:
        check_name(name)
        runtime = runtime or self.settings.runtime
        replicas = self.settings.replicas if replicas is None else replicas
        workers = self.settings.workers if workers is None else workers
        if not 1 <= replicas <= 64 or not 1 <= workers <= 64:
            raise ChimlError("replicas and workers must be between 1 and 64")
        if runtime == "mlflow":
            _check_runtime(runtime)  # other names (auto, onnxruntime-int8...) are the optimizer's to resolve
        self._require_running()

        with self.state.edit() as doc:
            records = doc.setdefault(STATE_KEY, {})
            if name in records:
                raise ChimlError(
                    f"endpoint {name!r} already exists ({records[name]['model_uri']})",
                    hint=f"delete it first (`chiml endpoints delete {name}`) or pick another --name",
                )
            record = {
                "model_uri": model_uri,
                "runtime": runtime,
                "workers": workers,
                "ports": self._allocate(doc, replicas),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "status": "deploying",
            }
            records[name] = record

        def undo() -> None:
            self._teardown(name, builtins.list(range(replicas)), remove_files=True)
            with self.state.edit() as doc:
                (doc.get(STATE_KEY) or {}).pop(name, None)

        def steps() -> Endpoint:
            folder = self.root / name
            shutil.rmtree(folder, ignore_errors=True)  # leftovers of a crashed earlier attempt
            folder.mkdir(parents=True)
            with _console.status(f"fetching {model_uri}..."):
                record["runtime"], record["source"] = self._fetch(model_uri, runtime, folder / "model")
            for replica in range(replicas):
                self.supervisor.add_program(self._program(name, record, replica))
            self._wait_ready(name, dict(enumerate(record["ports"])), self.settings.ready_timeout_s)
            with self.state.edit() as doc:
                stored = doc[STATE_KEY][name]
                stored.update(runtime=record["runtime"], source=record["source"], status="deployed")
            endpoint = self._endpoint(name, stored, live=False)
            endpoint.status = "ready"  # every replica just answered
            return endpoint

        return self._undo_on_failure(undo, steps)

    def _fetch(self, model_uri: str, runtime: str, dest: Path) -> tuple[str, str]:
        """Put the artifact for ``runtime`` into ``dest``; (runtime actually used, what was fetched)."""
        if runtime == "mlflow":
            source = download_model(model_uri, dest, self.profile.tracking_uri())
            if not is_mlflow_model(dest):
                raise ChimlError(f"{model_uri} is not an MLflow model (no MLmodel file)", hint="deploy a model URI")
            return runtime, source
        try:
            from chiml.optimize.artifacts import resolve_runtime_artifact
        except ImportError:
            raise ChimlError(
                f"runtime {runtime!r} needs an optimized artifact, but chiml.optimize is not available",
                hint="deploy with --runtime mlflow",
            ) from None
        view = _PlatformView(home=self.home, tracking_uri=self.profile.tracking_uri(), profile=self.profile)
        chosen, source = resolve_runtime_artifact(view, model_uri, runtime)
        _check_runtime(chosen)
        source = Path(source)
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            dest.mkdir(parents=True)
            shutil.copy2(source, dest / source.name)
        return chosen, f"{model_uri} ({chosen} artifact)"

    def wait_all_ready(self, progress: Callable[[str], None] | None = None) -> None:
        """After ``up``: wait for the endpoints supervisord restarted; report, never raise
        (a broken endpoint must not fail the platform's start)."""
        for name, record in sorted(self._records().items()):
            if record.get("status") != "deployed":
                continue
            try:
                self._wait_ready(name, dict(enumerate(record["ports"])), self.settings.ready_timeout_s, spinner=False)
            except ChimlError as err:
                if progress:
                    progress(f"endpoint {name} is not serving: {err}")
                continue
            if progress:
                progress(f"endpoint {name} is ready on {self._url(record['ports'][0])}")

    def list(self) -> builtins.list[Endpoint]:
        return [self._endpoint(name, record) for name, record in sorted(self._records().items())]

    def get(self, name: str) -> Endpoint:
        return self._endpoint(name, self._record(name))

    def urls(self, name: str) -> builtins.list[str]:
        """Every replica's base URL, from the state alone (no health check)."""
        return [self._url(port) for port in self._record(name).get("ports", [])]

    def url(self, name: str) -> str:
        return self.urls(name)[0]

    def log_file(self, name: str, replica: int = 0) -> Path:
        self._record(name)
        return self.supervisor.log_file(program_name(name, replica))

    def scale(self, name: str, replicas: int) -> Endpoint:
        if not 1 <= replicas <= 64:
            raise ChimlError("replicas must be between 1 and 64")
        self._require_running()
        with self.state.edit() as doc:
            record = (doc.get(STATE_KEY) or {}).get(name)
            if record is None:
                raise ChimlError(f"no endpoint named {name!r}", hint="see `chiml endpoints list`")
            current = len(record["ports"])
            if replicas > current:
                record["ports"] = record["ports"] + self._allocate(doc, replicas - current)
            snapshot = dict(record)
        if replicas < current:
            self._teardown(name, builtins.list(range(replicas, current)), remove_files=False)
            with self.state.edit() as doc:
                doc[STATE_KEY][name]["ports"] = doc[STATE_KEY][name]["ports"][:replicas]
            return self.get(name)
        if replicas == current:
            return self.get(name)
        added = builtins.list(range(current, replicas))

        def undo() -> None:
            self._teardown(name, added, remove_files=False)
            with self.state.edit() as doc:
                stored = (doc.get(STATE_KEY) or {}).get(name)
                if stored is not None:
                    stored["ports"] = stored["ports"][:current]

        def steps() -> Endpoint:
            for replica in added:
                self.supervisor.add_program(self._program(name, snapshot, replica))
            self._wait_ready(name, {i: snapshot["ports"][i] for i in added}, self.settings.ready_timeout_s)
            return self.get(name)

        return self._undo_on_failure(undo, steps)

    def delete(self, name: str) -> None:
        record = self._record(name)
        replicas = len(record.get("ports", []))
        # Programs first (a stray process would hold the port), then files, then the record.
        # ...including replicas a crashed scale added without recording them
        ours = re.compile(rf"^endpoint-{re.escape(name)}-(\d+)$")
        extra = [int(match[1]) for match in map(ours.match, self.supervisor.program_names()) if match]
        self._teardown(name, sorted(set(range(replicas)) | set(extra)), remove_files=True)
        with self.state.edit() as doc:
            (doc.get(STATE_KEY) or {}).pop(name, None)


def _check_runtime(runtime: str) -> None:
    """The runtime the endpoint process will run must be one chiml_serving knows."""
    from chiml_contract.runtimes import RUNTIMES

    if runtime not in RUNTIMES:
        raise ChimlError(f"unknown serving runtime {runtime!r}", hint=f"choose one of auto, {', '.join(RUNTIMES)}")


@dataclass(frozen=True)
class _PlatformView:
    """What :func:`chiml.optimize.artifacts.resolve_runtime_artifact` reads of a platform."""

    home: Path
    tracking_uri: str
    profile: Any
