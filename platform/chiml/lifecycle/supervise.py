"""The process that owns one training run: ``python -m chiml.lifecycle.supervise [--timeout S] TARGET [ARGS...]``.

chiml created the MLflow run (MLFLOW_TRACKING_URI and MLFLOW_RUN_ID are in the environment);
this runs the target as its child (``python -m chiml.lifecycle.runner``), passes the child's
output through to its own stdout/stderr while keeping a copy, and closes the run when the child
ends: FINISHED on exit 0, FAILED otherwise, KILLED when told to stop (SIGTERM or SIGINT: `chiml
runs cancel`, a deleted Job, a drained node) or past ``--timeout``. The copy of the output is
stored with the run (``logs/stdout.txt``, ``logs/stderr.txt``).

It is what a training Job's container runs and what `chiml train --detach` starts on the local
profile, so a run nobody watches still ends closed, with its output; `chiml train` without
``--detach`` runs the same :func:`supervise` in its own process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

Echo = Callable[[str, str], None]
#: the exit status of a run stopped by a signal (128 + SIGTERM), as a shell reports it
KILLED_EXIT = 128 + signal.SIGTERM


class Stopped(BaseException):
    """SIGTERM/SIGINT arrived: stop the child, close the run as KILLED."""


def runner_command(target: str, args: list[str]) -> list[str]:
    """The child that runs the user's code exactly as ``python script.py`` would."""
    return [sys.executable, "-m", "chiml.lifecycle.runner", target, *args]


def supervise(
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    client: Any,
    run_id: str,
    echo: Echo,
    timeout: float | None = None,
) -> tuple[str, int]:
    """Run ``command`` for ``run_id``; returns (status, exit code) after closing the run.

    KeyboardInterrupt and :class:`Stopped` stop the child (its whole process group), close the
    run as KILLED and propagate.
    """
    status, exit_code = "FAILED", -1
    with tempfile.TemporaryDirectory(prefix="chiml-train-") as logs:
        out_path, err_path = Path(logs, "stdout.txt"), Path(logs, "stderr.txt")
        try:
            exit_code = _run(command, env, cwd, out_path, err_path, echo, timeout)
            status = "FINISHED" if exit_code == 0 else "FAILED"
        except subprocess.TimeoutExpired:
            status = "KILLED"
        except (KeyboardInterrupt, Stopped):
            status = "KILLED"
            raise
        finally:
            # Always close the run, also when stopped: a RUNNING run nobody owns is the leftover to avoid.
            close_run(client, run_id, status, exit_code, [out_path, err_path])
    return status, exit_code


def close_run(client: Any, run_id: str, status: str, exit_code: int, logs: list[Path],
              error: str | None = None) -> None:
    """Store the output and the exit status with the run, then end it with ``status``."""
    try:
        for path in logs:
            if path.exists() and path.stat().st_size:
                client.log_artifact(run_id, str(path), artifact_path="logs")
        client.set_tag(run_id, "chiml.exit_code", str(exit_code))
        if error:
            client.set_tag(run_id, "chiml.error", error[:5000])
    finally:
        client.set_terminated(run_id, status=status)


def _run(
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    out_path: Path,
    err_path: Path,
    echo: Echo,
    timeout: float | None,
) -> int:
    # Own process group: on timeout or a stop the script and anything it forked (DataLoader
    # workers) are stopped together.
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    pumps = [
        threading.Thread(target=_pump, args=(process.stdout, out_path, "stdout", echo), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, err_path, "stderr", echo), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        code = process.wait(timeout=timeout)
    except BaseException:
        _stop(process)
        raise
    finally:
        for pump in pumps:
            pump.join(timeout=10)
    return code


def _pump(pipe: IO[bytes] | None, path: Path, stream: str, echo: Echo) -> None:
    assert pipe is not None
    with path.open("wb") as sink:
        for raw in iter(pipe.readline, b""):
            sink.write(raw)
            sink.flush()
            echo(stream, raw.decode("utf-8", errors="replace"))


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def echo_here(stream: str, line: str) -> None:
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.write(line)
    target.flush()


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    from chiml.lifecycle import mlflow_client

    args = list(sys.argv[1:] if argv is None else argv)
    timeout: float | None = None
    if args[:1] == ["--timeout"] and len(args) >= 2:
        timeout = float(args[1])
        args = args[2:]
    run_id = os.environ.get("MLFLOW_RUN_ID")
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not args or not run_id or not tracking_uri:
        print("usage: MLFLOW_TRACKING_URI=... MLFLOW_RUN_ID=... python -m chiml.lifecycle.supervise "
              "[--timeout S] TARGET [ARGS...]", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _raise_stopped)
    client = mlflow_client.client(tracking_uri)
    try:
        _status, code = supervise(runner_command(args[0], args[1:]), dict(os.environ), Path.cwd(), client, run_id,
                                  echo_here, timeout)
    except Stopped:
        return KILLED_EXIT
    return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a shell says


if __name__ == "__main__":
    sys.exit(main())
