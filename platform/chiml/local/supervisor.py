"""supervisord as the local profile's process supervisor.

chiml renders a supervisord config under CHIML_HOME, starts one supervisord per home and talks
to it over XML-RPC on a unix socket (no TCP port, owner-only). Each service or endpoint is a
``[program:x]`` file in ``supervisor/programs/``; adding one at run time is *write file ->
reloadConfig -> addProcessGroup*, and because the files persist, a later ``up`` brings every
endpoint back on its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from jinja2 import Environment, PackageLoader, StrictUndefined
from supervisor.xmlrpc import SupervisorTransport

from chiml.errors import ChimlError, UnreachableError

log = logging.getLogger(__name__)
_TEMPLATES = Environment(loader=PackageLoader("chiml.local", ""), undefined=StrictUndefined, keep_trailing_newline=True)
# AF_UNIX paths are limited to ~107 bytes; deep homes get a short socket under the temp dir.
_MAX_SOCKET_PATH = 100


@dataclass
class Program:
    """One supervised process."""

    name: str
    command: list[str]
    directory: Path
    environment: dict[str, str] = field(default_factory=dict)
    priority: int = 500
    user: str | None = None
    startsecs: int = 2
    stopsignal: str = "TERM"
    stopwaitsecs: int = 15


def _quote_env(env: dict[str, str]) -> str:
    # supervisor's environment syntax: KEY="value",KEY2="value2" with % doubled.
    parts = []
    for key, value in sorted(env.items()):
        escaped = str(value).replace("%", "%%").replace('"', '\\"')
        parts.append(f'{key}="{escaped}"')
    return ",".join(parts)


class Supervisor:
    """The supervisord of one CHIML_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.dir = home / "supervisor"
        self.programs_dir = self.dir / "programs"
        self.logs = home / "logs"
        self.conf = self.dir / "supervisord.conf"
        self.pidfile = self.dir / "supervisord.pid"
        socket = self.dir / "supervisor.sock"
        if len(str(socket)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha1(str(home).encode()).hexdigest()[:12]
            socket = Path(tempfile.gettempdir()) / f"chiml-{digest}.sock"
        self.socket = socket
        # Every program inherits CHIML_SUPERVISOR=<ident> from supervisord's environment, which
        # is how processes orphaned by a killed supervisord are found again (their command
        # lines need not mention the home: MLflow's uvicorn child does not).
        self.ident = hashlib.sha1(str(home).encode()).hexdigest()[:8]

    # ----------------------------------------------------------------- lifecycle
    def write_config(self, user: str | None = None) -> None:
        for folder in (self.dir, self.programs_dir, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.programs_dir.chmod(0o700)
        text = _TEMPLATES.get_template("supervisord.conf.j2").render(
            socket=self.socket,
            logs=self.logs,
            pidfile=self.pidfile,
            home=self.home,
            programs=self.programs_dir,
            user=user,
            ident=self.ident,
        )
        self.conf.write_text(text, encoding="utf-8")

    def pid(self) -> int | None:
        """PID of a live supervisord of this home; a stale pid file is removed."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
            is_ours = (
                alive and any("supervisord" in part for part in proc.cmdline()) and str(self.conf) in proc.cmdline()
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            is_ours = False
        if not is_ours:
            # Left behind by a killed machine or process, or the PID was reused.
            self.pidfile.unlink(missing_ok=True)
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 20.0) -> None:
        """Start supervisord (daemonizing) unless it already runs."""
        if self.is_running():
            return
        self.reap_orphans()
        self.socket.unlink(missing_ok=True)
        supervisord = Path(sys.executable).with_name("supervisord")
        cmd = [str(supervisord) if supervisord.exists() else "supervisord", "-c", str(self.conf)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ChimlError(f"supervisord failed to start: {(result.stderr or result.stdout).strip()}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is not None:
                try:
                    self.rpc.supervisor.getState()
                    return
                except (OSError, xmlrpc.client.Fault):
                    pass
            time.sleep(0.1)
        raise UnreachableError(
            f"supervisord did not answer within {timeout:.0f}s (see {self.logs / 'supervisord.log'})"
        )

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop every program, then supervisord; wait for all of them to exit."""
        pid = self.pid()
        if pid is None:
            return
        try:
            proc = psutil.Process(pid)
            children = proc.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        try:
            self.rpc.supervisor.shutdown()
        except (OSError, xmlrpc.client.Fault):
            os.kill(pid, signal.SIGTERM)
        _gone, alive = psutil.wait_procs([proc, *children], timeout=timeout)
        for leftover in alive:  # never leave a stray process behind
            leftover.kill()
        psutil.wait_procs(alive, timeout=5)
        self.pidfile.unlink(missing_ok=True)

    def orphans(self) -> list[psutil.Process]:
        """Live processes started by an earlier supervisord of this home that is gone now.

        A supervisord killed with SIGKILL (or an out-of-memory kill) leaves its programs running
        and holding their ports, so the next ``up`` could not start them again.
        """
        found = []
        me = os.getpid()
        for proc in psutil.process_iter(["pid"]):
            if proc.pid == me:
                continue
            try:
                if proc.environ().get("CHIML_SUPERVISOR") == self.ident:
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
                continue
        return found

    def reap_orphans(self, timeout: float = 10.0) -> int:
        """Stop what a dead supervisord left running (TERM, then KILL); how many there were."""
        orphans = self.orphans()
        if not orphans:
            return 0
        log.warning("stopping %d process(es) left by a supervisord that died", len(orphans))
        for proc in orphans:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _gone, alive = psutil.wait_procs(orphans, timeout=timeout)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        return len(orphans)

    # ----------------------------------------------------------------- RPC
    @property
    def rpc(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def _rpc_call(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self.rpc.supervisor, fn)(*args)
        except OSError as err:
            raise UnreachableError("the local platform is not running", hint="start it with `chiml up`") from err

    # ----------------------------------------------------------------- programs
    def program_file(self, name: str) -> Path:
        return self.programs_dir / f"{name}.conf"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def write_program(self, program: Program) -> bool:
        """Write the program's config; True when it changed."""
        self.programs_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        command = program.command
        if program.user is None:
            # Programs run as another user (PostgreSQL as `postgres` when chiml runs as root)
            # may not reach this interpreter, and PostgreSQL's backends exit with their
            # postmaster anyway; every other program is started through the leftover reaper.
            command = [sys.executable, "-m", "chiml.local.exec_program", program.name, "--", *command]
        text = _TEMPLATES.get_template("program.conf.j2").render(
            name=program.name,
            command=shlex.join(command).replace("%", "%%"),
            directory=program.directory,
            environment=_quote_env(program.environment),
            user=program.user,
            priority=program.priority,
            startsecs=program.startsecs,
            stopsignal=program.stopsignal,
            stopwaitsecs=program.stopwaitsecs,
            logfile=self.log_file(program.name),
        )
        path = self.program_file(program.name)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            path.chmod(0o600)  # files written by an older chiml were world-readable
            return False
        # Owner-only: a program's environment can hold credentials (MLflow's database URL).
        tmp = path.with_suffix(".conf.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)  # an existing tmp file keeps its old mode through O_CREAT
        os.replace(tmp, path)
        return True

    def apply(self) -> None:
        """Make the running supervisord match the program files (like `supervisorctl update`)."""
        added, changed, removed = self._rpc_call("reloadConfig")[0]
        for name in removed:
            self._stop_quietly(name)
            self._rpc_call("removeProcessGroup", name)
        for name in changed:
            self._stop_quietly(name)
            self._rpc_call("removeProcessGroup", name)
            self._rpc_call("addProcessGroup", name)
        for name in added:
            self._rpc_call("addProcessGroup", name)

    def _stop_quietly(self, name: str) -> None:
        with contextlib.suppress(xmlrpc.client.Fault):
            self.rpc.supervisor.stopProcessGroup(name, True)

    def add_program(self, program: Program) -> None:
        """Add (or update) a program while supervisord runs, and start it."""
        self.write_program(program)
        self.apply()

    def remove_program(self, name: str) -> None:
        """Stop a program and forget it; its log stays."""
        path = self.program_file(name)
        if not path.exists():
            return
        path.unlink()
        if self.is_running():
            self.apply()

    def restart_program(self, name: str) -> None:
        self._stop_quietly(name)
        self._rpc_call("startProcess", name, True)

    def program_info(self, name: str) -> dict[str, Any] | None:
        """supervisord's process info (statename, pid, ...), or None when unknown."""
        try:
            return self.rpc.supervisor.getProcessInfo(name)
        except xmlrpc.client.Fault:
            return None
        except OSError:
            return None

    def all_info(self) -> dict[str, dict[str, Any]]:
        try:
            return {info["name"]: info for info in self.rpc.supervisor.getAllProcessInfo()}
        except OSError:
            return {}

    def program_names(self) -> list[str]:
        return sorted(path.stem for path in self.programs_dir.glob("*.conf"))
