"""Endpoints on the local profile: supervised replica processes behind one HAProxy front each.

An endpoint is

* replicas: supervisord programs ``endpoint-<name>-<id>`` (``python -m chiml_serving``), each on
  its own loopback port from ``local.endpoint_ports``; ids only grow, so a rolling update can
  run old and new replicas side by side;
* the front: ``endpoint-<name>-front``, an HAProxy on the endpoint's one port and URL
  (:mod:`chiml.serving.front`), which spreads requests over the replicas, takes a dead one out
  and retries what it could not answer;
* with autoscaling, ``endpoint-<name>-autoscaler`` (:mod:`chiml.serving.autoscale`).

The model is downloaded once per revision into ``CHIML_HOME/endpoints/<name>/rev-<n>/model``,
so an endpoint never needs MLflow at run time, and because supervisord's program files and the
front's configuration persist, ``chiml down`` then ``chiml up`` brings every endpoint back by
itself. The registry of endpoints is the ``endpoints`` key of the state file; every change to
one endpoint (deploy, update, scale, delete, autoscaling) holds that endpoint's lock, and every
state change is a read-modify-write under the state file's lock, so CLIs, notebooks and the
autoscaler never lose each other's updates or share a port.

Every step that adds something (state entry, folder, program, front server) is undone when a
later step fails or the user interrupts, so a failed deploy leaves nothing behind and a failed
update leaves the endpoint serving its previous model; errors carry the endpoint's log tail.
"""

from __future__ import annotations

import builtins
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from filelock import FileLock, Timeout

from chiml.errors import AlreadyExistsError, ChimlError, InvalidInputError, NotFoundError, UnreachableError
from chiml.local.supervisor import Program, Supervisor
from chiml.progress import Progress, silent
from chiml.serving import front
from chiml.serving.artifacts import download_model, is_mlflow_model
from chiml.serving.backend import (
    Endpoint,
    EndpointBackend,
    EndpointStatus,
    Scaling,
    check_name,
    resolve_scaling,
)
from chiml_contract.runtimes import RUNTIMES, serve_command

STATE_KEY = "endpoints"
HOST = front.HOST
LOCAL_METRICS = ("concurrency", "cpu")
DEFAULT_TARGETS = {"concurrency": 8, "cpu": 80}
MAX_EVENTS = 50
_FAILED_STATES = {"BACKOFF", "FATAL", "EXITED"}
_POLL_S = 0.25


def program_name(name: str, replica: int) -> str:
    return f"endpoint-{name}-{replica}"


def front_program_name(name: str) -> str:
    return f"endpoint-{name}-front"


def autoscaler_program_name(name: str) -> str:
    return f"endpoint-{name}-autoscaler"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _replicas(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's replicas; records written before the front existed list bare ports."""
    if "replicas" in record:
        return list(record["replicas"])
    return [
        {"id": i, "port": port, "model_dir": "model", "runtime": record.get("runtime", "mlflow"),
         "workers": record.get("workers", 1)}
        for i, port in enumerate(record.get("ports", []))
    ]


def _scaling(record: dict[str, Any]) -> Scaling:
    stored = record.get("scaling")
    if stored:
        return Scaling(stored["min_replicas"], stored["max_replicas"], stored.get("metric"), stored.get("target"))
    count = len(_replicas(record))
    return Scaling(count, count)


class LocalEndpoints(EndpointBackend):
    """The local profile's endpoint backend (see the module docstring)."""

    def __init__(self, profile: Any) -> None:
        self.profile = profile
        self.supervisor: Supervisor = profile.supervisor
        self.state = profile.state
        self.home = Path(profile.home)
        self.settings = profile.config.serving
        self.root = self.home / "endpoints"

    # ------------------------------------------------------------------ state
    def _records(self) -> dict[str, dict[str, Any]]:
        return dict(self.state.get(STATE_KEY) or {})

    def _record(self, name: str) -> dict[str, Any]:
        record = self._records().get(name)
        if record is None:
            raise NotFoundError(f"no endpoint named {name!r}", hint="see `chiml endpoints list`")
        return record

    @contextmanager
    def _edit(self, name: str) -> Iterator[dict[str, Any]]:
        """Read-modify-write of one endpoint's record under the state lock."""
        with self.state.edit() as doc:
            record = (doc.get(STATE_KEY) or {}).get(name)
            if record is None:
                raise NotFoundError(f"endpoint {name!r} was deleted meanwhile")
            if "replicas" not in record:
                record["replicas"] = _replicas(record)
                record.pop("ports", None)
            yield record

    def _allocate(self, doc: dict[str, Any], count: int) -> list[int]:
        """``count`` ports from the range, unused by other endpoints and free right now."""
        used: set[int] = set()
        for record in (doc.get(STATE_KEY) or {}).values():
            used.update(replica["port"] for replica in _replicas(record))
            if record.get("port"):
                used.add(record["port"])
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

    @contextmanager
    def lock(self, name: str, blocking: bool = True, progress: Progress = silent) -> Iterator[None]:
        """Hold endpoint ``name`` for one change (deploy, update, scale, delete, autoscaling).

        Raises :class:`filelock.Timeout` at once when ``blocking`` is false and someone holds it."""
        folder = self.root / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder / f"{name}.lock"))
        if not blocking:
            lock.acquire(timeout=0)
        else:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                progress(f"waiting for another change of endpoint {name} to finish")
                wait = 2 * self.settings.ready_timeout_s + 60
                try:
                    lock.acquire(timeout=wait)
                except Timeout:
                    raise ChimlError(f"endpoint {name} is busy: another change did not finish in {wait:.0f}s") from None
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------------ programs
    def _interpreter(self, runtime: str) -> str:
        """DeepSparse pins numpy<2 and onnx<1.15: its endpoints run in their own environment."""
        if runtime != "deepsparse":
            return sys.executable
        from chiml.optimize import deepsparse_env

        return str(deepsparse_env.ensure(self.profile.home))

    def _replica_program(self, name: str, replica: dict[str, Any]) -> Program:
        return Program(
            name=program_name(name, replica["id"]),
            # the command line the contract defines for an endpoint process (the chart's too)
            command=serve_command(
                self._interpreter(replica["runtime"]), replica["runtime"], name,
                self.root / name / replica["model_dir"], replica["port"], host=HOST, workers=replica["workers"],
            ),
            directory=self.root / name,
            # WARNING keeps per-request trace lines out of the log (access lines are off by default).
            environment={"PYTHONUNBUFFERED": "1", "KSERVE_LOGLEVEL": "WARNING"},
            priority=900,  # after the platform's own services
            # A model load that crashes within 30 s counts as a failed start (supervisord backs
            # off, then gives up) instead of a restart loop.
            startsecs=30,
        )

    def _front_config(self, name: str) -> Path:
        return self.root / name / "front.cfg"

    def _front_api(self, name: str) -> front.FrontApi:
        return front.FrontApi(front.socket_path(self.root / name))

    def _front_program(self, name: str) -> Program:
        return Program(
            name=front_program_name(name),
            command=[front.find_haproxy(), "-db", "-f", str(self._front_config(name))],
            directory=self.root / name,
            priority=950,  # after the replicas it sends requests to
            startsecs=1,
            stopsignal="USR1",  # soft stop: requests in flight finish
            stopwaitsecs=30,
        )

    def _autoscaler_program(self, name: str) -> Program:
        config = self.profile.loaded.path
        return Program(
            name=autoscaler_program_name(name),
            command=[
                *(sys.executable, "-m", "chiml.serving.autoscale", "--home", str(self.home)),
                *(("--config", str(config)) if config else ()),
                name,
            ],
            directory=self.root / name,
            environment={"PYTHONUNBUFFERED": "1"},
            priority=960,
            startsecs=2,
        )

    def _write_front_config(self, name: str, record: dict[str, Any]) -> None:
        """The front's file lists the record's replicas: a restarted front serves what state says."""
        replicas = [front.ReplicaAddress(r["id"], r["port"]) for r in _replicas(record)]
        text = front.render_config(
            record["port"], replicas, front.socket_path(self.root / name), self.settings.request_timeout_s
        )
        path = self._front_config(name)
        tmp = path.with_suffix(".cfg.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)

    def _url(self, port: int) -> str:
        return f"http://{HOST}:{port}"

    def _log_tail(self, program: str, lines: int = 8) -> list[str]:
        path = self.supervisor.log_file(program)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-lines:]

    def _remove_program(self, program: str) -> None:
        self.supervisor.remove_program(program)
        log = self.supervisor.log_file(program)
        for path in log.parent.glob(log.name + "*"):  # the log and its rotated backups
            path.unlink(missing_ok=True)

    def _require_running(self) -> None:
        if not self.supervisor.is_running():
            raise UnreachableError("the local platform is not running", hint="start it with `chiml up`")

    # ------------------------------------------------------------------ waiting
    def _wait_ready(self, name: str, replicas: builtins.list[dict[str, Any]], timeout: float,
                    progress: Progress = silent) -> None:
        """Wait until every replica answers ready; raise with its log tail."""
        pending = {replica["id"]: replica["port"] for replica in replicas}
        first_pid: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        total = len(pending)
        with httpx.Client(timeout=2.0) as client:
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
                        progress(f"endpoint {name}: {total - len(pending)}/{total} new replica(s) ready")
                if not pending:
                    break
                if time.monotonic() > deadline:
                    replica = next(iter(pending))
                    raise self._start_error(name, program_name(name, replica), f"did not answer within {timeout:.0f}s")
                time.sleep(_POLL_S)

    def _wait_front(self, name: str, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        program = front_program_name(name)
        while True:
            info = self.supervisor.program_info(program) or {}
            if info.get("statename") in _FAILED_STATES:
                raise self._start_error(name, program, "front (HAProxy) exited")
            try:
                if httpx.get(f"{self._url(port)}/v2/health/ready", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise self._start_error(name, program, f"front did not answer on port {port} within {timeout:.0f}s")
            time.sleep(_POLL_S)

    def _start_error(self, name: str, program: str, what: str) -> ChimlError:
        tail = self._log_tail(program)
        reason = next((line for line in reversed(tail) if line.startswith("chiml-serving: cannot serve")), None)
        message = f"endpoint {name} {what}"
        if reason:
            message += f": {reason.removeprefix('chiml-serving: ')}"
        hint = "last log lines: " + " | ".join(tail[-5:]) if tail else None
        return ChimlError(message, hint=hint)

    # ------------------------------------------------------------------ replicas in and out
    def _add_replicas(
        self, name: str, count: int, spec: dict[str, Any], progress: Progress
    ) -> builtins.list[dict[str, Any]]:
        """Start ``count`` replicas of ``spec`` (model_dir, runtime, workers), wait until they
        answer, then put them behind the front. On failure they are gone again."""
        with self.state.edit() as doc:
            ports = self._allocate(doc, count)
            record = doc[STATE_KEY][name]
            record["replicas"] = _replicas(record)
            record.pop("ports", None)
            first = max([record.get("next_id", 0), *(r["id"] + 1 for r in record["replicas"])])
            added = [{"id": first + i, "port": port, **spec} for i, port in enumerate(ports)]
            record["replicas"].extend(added)
            record["next_id"] = first + count
            self._write_front_config(name, record)
        try:
            for replica in added:
                self.supervisor.add_program(self._replica_program(name, replica))
            self._wait_ready(name, added, self.settings.ready_timeout_s, progress)
            api = self._front_api(name)
            if api.available():
                for replica in added:
                    api.add(front.ReplicaAddress(replica["id"], replica["port"]))
        except BaseException:  # Ctrl-C included: never leave a half-added replica
            for replica in added:
                self._retire(name, replica, drain=False)
            raise
        return added

    def _retire(self, name: str, replica: dict[str, Any], drain: bool = True, progress: Progress = silent) -> None:
        """Take a replica out of the front (letting its requests finish), then stop it."""
        api = self._front_api(name)
        if api.available():
            try:
                if drain:
                    api.drain(replica["id"])
                    if not api.wait_idle(replica["id"], self.settings.request_timeout_s):
                        progress(f"replica {replica['id']} still busy after {self.settings.request_timeout_s:.0f}s")
                api.remove(replica["id"])
            except ChimlError as err:
                progress(f"front: {err.message}")
        try:
            with self._edit(name) as record:
                record["replicas"] = [r for r in record["replicas"] if r["id"] != replica["id"]]
                self._write_front_config(name, record)
        except NotFoundError:
            pass
        self._remove_program(program_name(name, replica["id"]))

    def _resize(self, name: str, count: int, progress: Progress) -> None:
        """Add or remove replicas of the current revision until there are ``count``."""
        record = self._record(name)
        replicas = _replicas(record)
        if count > len(replicas):
            spec = {"model_dir": record.get("model_dir", "model"), "runtime": record["runtime"],
                    "workers": record["workers"]}
            progress(f"endpoint {name}: starting {count - len(replicas)} replica(s)")
            self._add_replicas(name, count - len(replicas), spec, progress)
        for replica in sorted(replicas, key=lambda r: r["id"], reverse=True)[: max(0, len(replicas) - count)]:
            progress(f"endpoint {name}: draining replica {replica['id']}")
            self._retire(name, replica, progress=progress)

    def record_event(self, name: str, before: int, after: int, why: str) -> None:
        """Note a scaling decision (shown by `endpoints describe`)."""
        with self._edit(name) as record:
            events = record.setdefault("events", [])
            events.append({"time": _now(), "from": before, "to": after, "why": why})
            del events[:-MAX_EVENTS]

    def autoscale_to(self, name: str, count: int, why: str, progress: Progress = silent) -> None:
        """The autoscaler's change: resize within the range and record why (caller holds the lock)."""
        record = self._record(name)
        scaling = _scaling(record)
        count = min(max(count, scaling.min_replicas), scaling.max_replicas)
        before = len(_replicas(record))
        if count == before:
            return
        self._resize(name, count, progress)
        self.record_event(name, before, count, why)

    # ------------------------------------------------------------------ the interface
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
        check_name(name)
        scaling = resolve_scaling(
            replicas, min_replicas, max_replicas, scale_metric, scale_target,
            default_replicas=self.settings.replicas, metrics=LOCAL_METRICS,
        )  # fmt: skip
        runtime = runtime or self.settings.runtime
        workers_given = workers
        workers = self.settings.workers if workers is None else workers
        if not 1 <= workers <= 64:
            raise InvalidInputError("workers must be between 1 and 64")
        if runtime == "mlflow":
            _check_runtime(runtime)  # other names (auto, onnxruntime-int8...) are the optimizer's to resolve
        self._require_running()
        front.find_haproxy()  # one clear line before anything starts
        with self.lock(name, progress=progress):
            existing = self._records().get(name)
            if existing is not None and existing.get("status") == "deploying":
                # we hold its lock, so the deploy that wrote this was killed half-way: start afresh
                progress(f"removing what an interrupted deploy of {name} left")
                self._teardown(name)
            elif existing is not None:
                return self._update(name, model_uri, runtime, workers_given, scaling, progress)
            return self._create(name, model_uri, runtime, workers, scaling or Scaling(self.settings.replicas,
                                                                                      self.settings.replicas), progress)

    def update(
        self,
        name: str,
        model_uri: str,
        runtime: str | None = None,
        workers: int | None = None,
        *,
        progress: Progress = silent,
    ) -> Endpoint:
        self._record(name)
        return self.deploy(model_uri, name, runtime=runtime, workers=workers, progress=progress)

    def _create(self, name: str, model_uri: str, runtime: str, workers: int, scaling: Scaling,
                progress: Progress) -> Endpoint:
        with self.state.edit() as doc:
            records = doc.setdefault(STATE_KEY, {})
            if name in records:  # only while another chiml does not honour the endpoint lock
                raise AlreadyExistsError(f"endpoint {name!r} already exists")
            records[name] = {
                "model_uri": model_uri, "runtime": runtime, "workers": workers, "model_dir": "rev-1/model",
                "revision": 1, "port": self._allocate(doc, 1)[0], "replicas": [], "next_id": 0,
                "scaling": _stored_scaling(scaling), "events": [], "created": _now(), "status": "deploying",
            }  # fmt: skip

        def undo() -> None:
            self._teardown(name)

        try:
            folder = self.root / name
            shutil.rmtree(folder, ignore_errors=True)  # leftovers of a crashed earlier attempt
            folder.mkdir(parents=True)
            progress(f"fetching {model_uri}")
            chosen, source = self._fetch(model_uri, runtime, folder / "rev-1" / "model")
            with self._edit(name) as record:
                record.update(runtime=chosen, source=source)
                self._write_front_config(name, record)
            progress(f"starting {scaling.min_replicas} replica(s) of {name} ({chosen})")
            spec = {"model_dir": "rev-1/model", "runtime": chosen, "workers": workers}
            self._add_replicas(name, scaling.min_replicas, spec, progress)
            progress(f"starting the front of {name}")
            program = self._front_program(name)
            front.check_config(program.command[0], self._front_config(name))
            self.supervisor.add_program(program)
            record = self._record(name)
            self._wait_front(name, record["port"])
            if scaling.autoscaled:
                self.supervisor.add_program(self._autoscaler_program(name))
            with self._edit(name) as record:
                record["status"] = "deployed"
        except BaseException:  # Ctrl-C included: never leave a half-made endpoint
            undo()
            raise
        return self.get(name)

    def _update(self, name: str, model_uri: str, runtime: str, workers: int | None, scaling: Scaling | None,
                progress: Progress) -> Endpoint:
        """Rolling update: one new replica up and behind the front, then one old one drained out."""
        record = self._record(name)
        old = _replicas(record)
        old_spec = {"model_dir": record.get("model_dir", "model"), "runtime": record["runtime"],
                    "workers": record["workers"]}
        workers = record["workers"] if workers is None else workers
        revision = int(record.get("revision", 0)) + 1
        model_dir = f"rev-{revision}/model"
        folder = self.root / name / f"rev-{revision}"
        shutil.rmtree(folder, ignore_errors=True)
        progress(f"fetching {model_uri}")
        try:
            chosen, source = self._fetch(model_uri, runtime, folder / "model")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        scaling = scaling or _scaling(record)
        count = min(max(len(old), scaling.min_replicas), scaling.max_replicas)
        spec = {"model_dir": model_dir, "runtime": chosen, "workers": workers}
        with self._edit(name) as stored:
            stored["status"] = "updating"
        added: builtins.list[dict[str, Any]] = []
        retired: builtins.list[dict[str, Any]] = []
        try:
            for step in range(count):
                progress(f"endpoint {name}: replica {step + 1}/{count} of the new model")
                added += self._add_replicas(name, 1, spec, progress)
                if step < len(old):
                    self._retire(name, old[step], progress=progress)
                    retired.append(old[step])
            for replica in old[count:]:
                self._retire(name, replica, progress=progress)
                retired.append(replica)
        except BaseException:
            # roll back: the old model takes over again, the new replicas go
            progress(f"endpoint {name}: update failed, rolling back")
            try:
                if retired:
                    self._add_replicas(name, len(retired), old_spec, silent)
            finally:
                for replica in added:
                    self._retire(name, replica)
                with self._edit(name) as stored:
                    stored["status"] = "deployed"
                shutil.rmtree(folder, ignore_errors=True)
            raise
        with self._edit(name) as stored:
            stored.update(model_uri=model_uri, runtime=chosen, source=source, workers=workers, model_dir=model_dir,
                          revision=revision, scaling=_stored_scaling(scaling), status="deployed", updated=_now())
        self._remove_unused_models(name)
        self._sync_autoscaler(name, scaling)
        return self.get(name)

    def _remove_unused_models(self, name: str) -> None:
        record = self._record(name)
        dirs = [r["model_dir"] for r in _replicas(record)] + [record.get("model_dir", "model")]
        used = {path.split("/")[0] for path in dirs}
        for path in (self.root / name).iterdir():
            if path.is_dir() and (path.name.startswith("rev-") or path.name == "model") and path.name not in used:
                shutil.rmtree(path, ignore_errors=True)

    def _sync_autoscaler(self, name: str, scaling: Scaling) -> None:
        program = autoscaler_program_name(name)
        if scaling.autoscaled:
            self.supervisor.add_program(self._autoscaler_program(name))
        elif self.supervisor.program_file(program).exists():
            self.supervisor.remove_program(program)

    def _fetch(self, model_uri: str, runtime: str, dest: Path) -> tuple[str, str]:
        """Put the artifact for ``runtime`` into ``dest``; (runtime actually used, what was fetched)."""
        if runtime == "mlflow":
            source = download_model(model_uri, dest, self.profile.tracking_uri())
            if not is_mlflow_model(dest):
                raise InvalidInputError(f"{model_uri} is not an MLflow model (no MLmodel file)",
                                        hint="deploy a model URI")
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
        scaling = resolve_scaling(
            replicas, min_replicas, max_replicas, scale_metric, scale_target,
            default_replicas=1, metrics=LOCAL_METRICS,
        )  # fmt: skip
        if scaling is None:
            raise InvalidInputError("give a number of replicas, or --min-replicas/--max-replicas")
        self._require_running()
        self._record(name)
        with self.lock(name, progress=progress):
            record = self._record(name)
            before = len(_replicas(record))
            count = min(max(before, scaling.min_replicas), scaling.max_replicas)
            with self._edit(name) as stored:
                stored["scaling"] = _stored_scaling(scaling)
            if count != before:
                self._resize(name, count, progress)
                self.record_event(name, before, count, "asked: " + _describe(scaling))
            self._sync_autoscaler(name, scaling)
        return self.get(name)

    def delete(self, name: str) -> None:
        self._record(name)
        with self.lock(name):
            self._record(name)
            self._teardown(name)

    def _teardown(self, name: str) -> None:
        """Programs first (a stray process would hold a port), then files, then the record,
        including replicas a crashed change started without recording them."""
        ours = re.compile(rf"^endpoint-{re.escape(name)}-(\d+|front|autoscaler)$")
        for program in self.supervisor.program_names():
            if ours.match(program):
                self._remove_program(program)
        shutil.rmtree(self.root / name, ignore_errors=True)
        sock = front.socket_path(self.root / name)
        if sock.parent != self.root / name:
            sock.unlink(missing_ok=True)
        with self.state.edit() as doc:
            (doc.get(STATE_KEY) or {}).pop(name, None)

    # ------------------------------------------------------------------ reading
    def _replica_state(self, name: str, replica: dict[str, Any], stats: dict[int, front.ServerStats],
                       all_info: dict[str, dict[str, Any]]) -> dict[str, Any]:
        info = all_info.get(program_name(name, replica["id"])) or {}
        server = stats.get(replica["id"])
        return {
            "id": replica["id"], "port": replica["port"], "url": self._url(replica["port"]),
            "process": str(info.get("statename", "STOPPED")).lower(), "pid": info.get("pid") or None,
            "front": server.status if server else "absent", "in_flight": server.in_flight if server else 0,
            "model_dir": replica["model_dir"],
        }  # fmt: skip

    def _endpoint(self, name: str, record: dict[str, Any], live: bool = True) -> Endpoint:
        replicas = _replicas(record)
        scaling = _scaling(record)
        port = record.get("port")
        url = self._url(port) if port else (self._url(replicas[0]["port"]) if replicas else None)
        info: builtins.list[dict[str, Any]] = []
        status: EndpointStatus = "unknown"
        if record.get("status") == "deploying":
            status = "starting"
        elif record.get("status") == "updating":
            status = "updating"
        if live:
            running = self.supervisor.is_running()
            all_info = self.supervisor.all_info() if running else {}
            stats: dict[int, front.ServerStats] = {}
            if running:
                try:
                    stats = {s.id: s for s in self._front_api(name).stats().servers}
                except ChimlError:
                    stats = {}
            info = [self._replica_state(name, r, stats, all_info) for r in replicas]
            if status == "unknown":
                status = self._status(name, running, all_info, info, bool(stats))
        return Endpoint(
            name=name,
            model_uri=record["model_uri"],
            runtime=record["runtime"],
            url=url,
            replicas=len(replicas),
            workers=record["workers"],
            status=status,
            ports=[r["port"] for r in replicas],
            urls=[self._url(r["port"]) for r in replicas],
            detail=record.get("source", ""),
            created=record.get("created", ""),
            min_replicas=scaling.min_replicas,
            max_replicas=scaling.max_replicas,
            scale_metric=scaling.metric,
            scale_target=(scaling.target or DEFAULT_TARGETS.get(scaling.metric or "")) if scaling.metric else None,
            replica_info=info,
            events=list(record.get("events", [])),
        )

    def _status(self, name: str, running: bool, all_info: dict[str, dict[str, Any]],
                replicas: builtins.list[dict[str, Any]], front_answers: bool) -> EndpointStatus:
        if not running:
            return "stopped"
        front_state = (all_info.get(front_program_name(name)) or {}).get("statename")
        if front_state in _FAILED_STATES:
            return "failed"
        if any(r["front"].startswith("UP") for r in replicas) and front_answers:
            return "ready"
        if replicas and all(r["process"] in ("fatal", "backoff", "exited") for r in replicas):
            return "failed"
        if front_state is None and not replicas:
            return "stopped"
        return "starting"

    def list(self) -> builtins.list[Endpoint]:
        return [self._endpoint(name, record) for name, record in sorted(self._records().items())]

    def get(self, name: str) -> Endpoint:
        return self._endpoint(name, self._record(name))

    def urls(self, name: str) -> builtins.list[str]:
        """Every replica's own base URL, from the state alone (no health check)."""
        return [self._url(r["port"]) for r in _replicas(self._record(name))]

    def url(self, name: str) -> str:
        record = self._record(name)
        if record.get("port"):
            return self._url(record["port"])
        return self.urls(name)[0]

    def log_file(self, name: str, replica: int | None = None) -> Path:
        """A replica's log (by id; the first replica's when None)."""
        replicas = _replicas(self._record(name))
        if replica is None:
            if not replicas:
                return self.supervisor.log_file(front_program_name(name))
            replica = min(r["id"] for r in replicas)
        return self.supervisor.log_file(program_name(name, replica))

    def front_log_file(self, name: str) -> Path:
        self._record(name)
        return self.supervisor.log_file(front_program_name(name))

    def wait_all_ready(self, progress: Callable[[str], None] | None = None) -> None:
        """After ``up``: give endpoints from an older chiml a front, wait for the fronts
        supervisord restarted; report, never raise (a broken endpoint must not fail the start)."""
        report = progress or silent
        for name, record in sorted(self._records().items()):
            if record.get("status") not in ("deployed", "updating"):
                continue
            try:
                if not record.get("port"):
                    self._add_front(name)
                    record = self._record(name)
                self._wait_ready(name, _replicas(record), self.settings.ready_timeout_s)
                self._wait_front(name, record["port"])
            except ChimlError as err:
                report(f"endpoint {name} is not serving: {err}")
                continue
            report(f"endpoint {name} is ready on {self._url(record['port'])}")

    def _add_front(self, name: str) -> None:
        with self.lock(name):
            with self.state.edit() as doc:
                port = self._allocate(doc, 1)[0]
                record = doc[STATE_KEY][name]
                record["replicas"] = _replicas(record)
                record.pop("ports", None)
                record.update(port=port, model_dir=record.get("model_dir", "model"))
                self._write_front_config(name, record)
            self.supervisor.add_program(self._front_program(name))

    def health(self) -> builtins.list[tuple[str, str, bool, str]]:
        """(name, url, serving, detail) of every endpoint, for `chiml status`."""
        rows = []
        for endpoint in self.list():
            up = sum(1 for r in endpoint.replica_info if r["front"].startswith("UP"))
            detail = f"endpoint: {up}/{endpoint.replicas} replicas up behind the front"
            rows.append((endpoint.name, endpoint.url or "", endpoint.status == "ready", detail))
        return rows


def _stored_scaling(scaling: Scaling) -> dict[str, Any]:
    return scaling.to_json()


def _describe(scaling: Scaling) -> str:
    if not scaling.autoscaled:
        return f"{scaling.min_replicas} replica(s)"
    target = scaling.target or DEFAULT_TARGETS[scaling.metric or "concurrency"]
    return f"{scaling.min_replicas}-{scaling.max_replicas} replicas, {scaling.metric} target {target}"


def _check_runtime(runtime: str) -> None:
    """The runtime the endpoint process will run must be one chiml_serving knows."""
    if runtime not in RUNTIMES:
        raise InvalidInputError(f"unknown serving runtime {runtime!r}",
                                hint=f"choose one of auto, {', '.join(RUNTIMES)}")


@dataclass(frozen=True)
class _PlatformView:
    """What :func:`chiml.optimize.artifacts.resolve_runtime_artifact` reads of a platform."""

    home: Path
    tracking_uri: str
    profile: Any
