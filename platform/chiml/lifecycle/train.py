"""`chiml train`: run a script or ``module:function`` as one tracked MLflow run.

chiml creates the run itself, then starts the target in a child process with the platform
wired in through the environment (tracking URI, experiment, run id, TensorBoard dir, params)
so that the script needs nothing but ``chiml.lifecycle.tracking`` or plain ``mlflow`` calls.
The child's stdout and stderr are shown live and stored with the run; its exit status
decides the run's status. chiml, not the child, closes the run, so a script that crashes,
is killed or never touches MLflow still leaves a correctly closed run behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from chiml.errors import ChimlError
from chiml.lifecycle import mlflow_server
from chiml.lifecycle.target import resolve
from chiml.lifecycle.tracking import ENV_DEVICE, ENV_PARAMS, ENV_TB_LOGDIR


@dataclass
class TrainResult:
    """What a training run produced."""

    run_id: str
    run_url: str
    status: str  # FINISHED | FAILED | KILLED
    exit_code: int
    model_uri: str | None
    experiment: str
    experiment_id: str
    tensorboard_dir: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_training(
    platform: Any,
    target: str,
    params: dict[str, Any],
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    args: Sequence[str] = (),
    gpu: bool | None = None,
    tags: dict[str, str] | None = None,
    timeout: float | None = None,
    echo: Callable[[str, str], None] | None = None,
    on_start: Callable[[str, str], None] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Run ``target`` with ``params`` as a tracked run and wait for it.

    ``gpu``: None uses a GPU when present, False hides GPUs from the script.
    ``echo(stream, line)`` receives the output live (default: this process's stdout/stderr).
    ``on_start(run_id, run_url)`` is called once the run exists, before the script starts.
    ``timeout``: seconds before the script is stopped and the run marked KILLED.
    """
    workdir = Path(cwd) if cwd is not None else Path.cwd()
    resolved = resolve(target, cwd=workdir)  # before creating anything
    mlflow_server.configure_client_env()
    tracking_uri = platform.tracking_uri
    client = mlflow_server.client(tracking_uri)
    experiment = experiment or platform.config.training.experiment
    experiment_id = mlflow_server.experiment_id(client, experiment)
    run_tags = {
        "mlflow.source.name": resolved.spec,
        "mlflow.source.type": "LOCAL",
        "chiml.kind": "train",
        "chiml.target": resolved.spec,
        "chiml.params": json.dumps(params, default=str)[:5000],
        **(tags or {}),
    }
    run = client.create_run(experiment_id, run_name=run_name, tags=run_tags)
    run_id = run.info.run_id
    tb_dir = _tensorboard_dir(platform.tensorboard_logdir, experiment, run.info.run_name or run_id, run_id)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": experiment,
        "MLFLOW_EXPERIMENT_ID": experiment_id,
        "MLFLOW_RUN_ID": run_id,
        ENV_TB_LOGDIR: str(tb_dir),
        ENV_PARAMS: json.dumps(params, default=str),
        "PYTHONUNBUFFERED": "1",
    }
    if gpu is False:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env[ENV_DEVICE] = "cpu"
    command = [sys.executable, "-m", "chiml.lifecycle.runner", resolved.spec, *args]
    url = mlflow_server.run_url(tracking_uri, experiment_id, run_id)
    if on_start is not None:
        on_start(run_id, url)
    status, exit_code = "FAILED", -1
    with tempfile.TemporaryDirectory(prefix="chiml-train-") as logs:
        out_path, err_path = Path(logs, "stdout.txt"), Path(logs, "stderr.txt")
        try:
            exit_code = _run(command, env, workdir, out_path, err_path, echo or _echo, timeout)
            status = "FINISHED" if exit_code == 0 else "FAILED"
        except subprocess.TimeoutExpired:
            status = "KILLED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except OSError as err:
            raise ChimlError(f"could not start the training process: {err}") from None
        finally:
            # Always close the run, also on Ctrl-C: a RUNNING run nobody owns is the leftover to avoid.
            _close_run(client, run_id, status, exit_code, [out_path, err_path])
    model_uri = mlflow_server.run_model_uri(client, experiment_id, run_id)
    return TrainResult(
        run_id=run_id,
        run_url=url,
        status=status,
        exit_code=exit_code,
        model_uri=model_uri,
        experiment=experiment,
        experiment_id=experiment_id,
        tensorboard_dir=str(tb_dir),
    )


def _tensorboard_dir(logdir: str, experiment: str, run_name: str, run_id: str) -> Path:
    """``<logdir>/<experiment>/<run name>``, or ``<run id>`` if that name is taken already."""
    base = Path(logdir) / _safe(experiment)
    path = base / _safe(run_name)
    return path if not path.exists() else base / run_id


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name) or "_"


def _echo(stream: str, line: str) -> None:
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.write(line)
    target.flush()


def _run(
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    out_path: Path,
    err_path: Path,
    echo: Callable[[str, str], None],
    timeout: float | None,
) -> int:
    # Own process group: on timeout or Ctrl-C the script and anything it forked (DataLoader
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


def _pump(pipe: IO[bytes] | None, path: Path, stream: str, echo: Callable[[str, str], None]) -> None:
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


def _close_run(client: Any, run_id: str, status: str, exit_code: int, logs: list[Path]) -> None:
    try:
        for path in logs:
            if path.exists() and path.stat().st_size:
                client.log_artifact(run_id, str(path), artifact_path="logs")
        client.set_tag(run_id, "chiml.exit_code", str(exit_code))
    finally:
        client.set_terminated(run_id, status=status)
