"""`chiml train`: run a script or ``module:function`` as one tracked MLflow run.

chiml creates the run itself, then starts the target in a child process with the platform
wired in through the environment (tracking URI, experiment, run id, TensorBoard dir, params)
so that the script needs nothing but ``chiml.tracking`` or plain ``mlflow`` calls.
The child's stdout and stderr are shown live and stored with the run; its exit status
decides the run's status. chiml, not the child, closes the run (:mod:`chiml.lifecycle.supervise`),
so a script that crashes, is killed or never touches MLflow still leaves a correctly closed run.

Where the child runs depends on the profile: here (local), or in a Kubernetes Job's pod
(kubernetes, chameleon: :mod:`chiml.lifecycle.remote`). ``detach`` returns once the run is
started; `chiml runs` follows, lists and cancels it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chiml.errors import ChimlError, NotSupportedError
from chiml.lifecycle import mlflow_client
from chiml.lifecycle.context import ENV_DEVICE, ENV_PARAMS, ENV_TB_LOGDIR
from chiml.lifecycle.runs import process_tags, start_detached
from chiml.lifecycle.supervise import echo_here, runner_command, supervise
from chiml.lifecycle.target import resolve
from chiml.sites import TrainingSite

# Profiles whose training runs on the cluster as a Kubernetes Job.
CLUSTER_PROFILES = ("kubernetes", "chameleon")


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
    platform: TrainingSite,
    target: str,
    params: dict[str, Any],
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    args: Sequence[str] = (),
    gpu: bool | None = None,
    gpus: int | None = None,
    tags: dict[str, str] | None = None,
    timeout: float | None = None,
    echo: Callable[[str, str], None] | None = None,
    on_start: Callable[[str, str], None] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    detach: bool = False,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Run ``target`` with ``params`` as a tracked run and wait for it.

    On the kubernetes and chameleon profiles the run is a Kubernetes Job on the cluster
    (:mod:`chiml.lifecycle.remote`); ``dry_run`` then returns the objects it would create and
    ``detach`` returns once they exist. On the local profile it is a child process here.

    ``gpu``: None uses a GPU when present, False hides GPUs from the script.
    ``gpus``: how many GPUs (cluster: ``nvidia.com/gpu``; local: the first N devices).
    ``echo(stream, line)`` receives the output live (default: this process's stdout/stderr).
    ``on_start(run_id, run_url)`` is called once the run exists, before the script starts.
    ``timeout``: seconds before the script is stopped and the run marked KILLED.
    """
    profile = platform.profile.name
    if profile in CLUSTER_PROFILES:
        from chiml.lifecycle.remote import run_on_cluster

        wanted = gpus if gpus is not None else (0 if gpu is not True else 1)
        return run_on_cluster(
            platform, target, params, experiment=experiment, run_name=run_name, args=args, gpus=wanted,
            tags=tags, timeout=timeout, echo=echo, on_start=on_start, progress=progress,
            cwd=Path(cwd) if cwd is not None else None,
            detach=detach, dry_run=dry_run,
        )  # fmt: skip
    if dry_run:
        raise NotSupportedError(
            f"--dry-run is for cluster profiles: on the {profile} profile the run is a process here, no objects")
    workdir = Path(cwd) if cwd is not None else Path.cwd()
    resolved = resolve(target, cwd=workdir)  # before creating anything
    devices = select_devices(gpus, os.environ.get("CUDA_VISIBLE_DEVICES")) if gpus and gpu is not False else None
    mlflow_client.configure_client_env()
    tracking_uri = platform.tracking_uri
    client = mlflow_client.connect(platform)
    experiment = experiment or platform.config.training.experiment
    experiment_id = mlflow_client.experiment_id(client, experiment)
    run_tags = {
        "mlflow.source.name": resolved.spec,
        "mlflow.source.type": "LOCAL",
        "chiml.kind": "train",
        "chiml.target": resolved.spec,
        "chiml.params": json.dumps(params, default=str)[:5000],
        **process_tags(os.getpid()),  # this process supervises it (`chiml runs cancel` interrupts it)
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
    if gpu is False or gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env[ENV_DEVICE] = "cpu"
    elif devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices
    url = mlflow_client.run_url(tracking_uri, experiment_id, run_id)
    if on_start is not None:
        on_start(run_id, url)
    if detach:
        start_detached(platform, client, run_id, resolved.spec, list(args), env, workdir, timeout)
        return TrainResult(run_id, url, "RUNNING", -1, None, experiment, experiment_id, str(tb_dir))
    try:
        status, exit_code = supervise(runner_command(resolved.spec, list(args)), env, workdir, client, run_id,
                                      echo or echo_here, timeout)
    except OSError as err:
        raise ChimlError(f"could not start the training process: {err}") from None
    model_uri = mlflow_client.run_model_uri(client, experiment_id, run_id)
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


def visible_gpus(current: str | None = None) -> list[str]:
    """The GPU ids this process may use: $CUDA_VISIBLE_DEVICES when set, else what the driver lists.

    Asks ``nvidia-smi -L`` (no CUDA initialisation); without nvidia-smi, torch.cuda where torch
    is installed (a container may carry the driver libraries but not the tool).
    """
    if current is not None and current.strip() not in ("", "-1"):
        return [d.strip() for d in current.split(",") if d.strip()]
    if current is not None:
        return []
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [str(i) for i in range(_torch_device_count())]
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(line for line in listing.splitlines() if line.startswith("GPU "))]


def _torch_device_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    try:
        return int(torch.cuda.device_count())
    except Exception:  # a broken driver installation: no usable GPU
        return 0


def select_devices(count: int, current: str | None = None) -> str:
    """CUDA_VISIBLE_DEVICES for the first ``count`` visible GPUs; one clear error when there are fewer."""
    devices = visible_gpus(current)
    if len(devices) < count:
        have = f"only {len(devices)} GPU(s) are visible ({', '.join(devices)})" if devices else "no GPU is visible here"
        raise NotSupportedError(f"--gpus {count}: {have}",
                                hint="use --gpus 0 (CPU), or a cluster profile with GPU nodes")
    return ",".join(devices[:count])


def _tensorboard_dir(logdir: str, experiment: str, run_name: str, run_id: str) -> Path:
    """``<logdir>/<experiment>/<run name>``, or ``<run id>`` if that name is taken already."""
    base = Path(logdir) / _safe(experiment)
    path = base / _safe(run_name)
    return path if not path.exists() else base / run_id


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name) or "_"


