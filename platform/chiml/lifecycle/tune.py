"""`chiml tune`: an Optuna study in the platform's shared storage, K worker processes.

The study lives in the platform's storage (journal file locally, PostgreSQL elsewhere), so
optuna-dashboard shows it live and a later `chiml tune --study NAME` continues it. The study
has one MLflow parent run (kept across resumes); every trial is a child run. This process
only supervises: it starts the workers (:mod:`chiml.lifecycle.worker`), shows progress,
replaces a worker that dies (failing the trial it was running, so the study stays
consistent), and at the end records the best trial on the parent run.

On the kubernetes and chameleon profiles the workers are the pods of an Indexed Job and this
process watches them from the laptop (:mod:`chiml.lifecycle.remote_tune`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import psutil
from optuna.trial import TrialState

from chiml.errors import ChimlError, InvalidInputError
from chiml.lifecycle import mlflow_client
from chiml.lifecycle.storage import describe_storage, open_storage
from chiml.lifecycle.study import (
    CRASHED_ATTR,
    HOST_ATTR,
    PARENT_ATTR,
    PID_ATTR,
    RUN_ATTR,
    counted,
    lost,
    make_pruner,
    make_sampler,
    open_study,
    this_host,
)
from chiml.lifecycle.target import resolve
from chiml.lifecycle.train import CLUSTER_PROFILES, _safe
from chiml.lifecycle.worker import CONFIG_ERROR, WorkerSpec
from chiml.sites import TrainingSite

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class StudyProgress:
    """A snapshot for progress displays."""

    goal: int
    complete: int
    pruned: int
    failed: int
    running: int
    best_value: float | None
    workers: int


@dataclass
class StudyResult:
    """What a tuning study produced (over all its sessions, if resumed)."""

    study_name: str
    direction: str
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    best_run_id: str | None
    model_uri: str | None
    parent_run_id: str
    parent_run_url: str
    n_trials: int
    n_complete: int
    n_pruned: int
    n_failed: int
    storage: str
    worker_restarts: int = 0
    logs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_study(
    platform: TrainingSite,
    target: str,
    *,
    trials: int = 20,
    workers: int | None = None,
    study_name: str | None = None,
    metric: str | None = None,
    direction: str | None = None,
    sampler: str | None = None,
    pruner: str | None = None,
    params: dict[str, Any] | None = None,
    experiment: str | None = None,
    timeout: float | None = None,
    threads_per_worker: int | None = None,
    seed: int | None = None,
    args: list[str] | None = None,
    max_restarts: int | None = None,
    progress: Callable[[StudyProgress], None] | None = None,
    gpus: int | None = None,
    dry_run: bool = False,
    cwd: str | os.PathLike[str] | None = None,
) -> Any:
    """Run ``trials`` more trials of ``study_name`` (created if new) with ``workers`` processes.

    The objective is the last value of ``metric`` logged with ``ct.log_metrics`` (else the
    last ``ct.report`` value, else a function target's return value). Sampler, pruner,
    metric and direction are remembered by the study: a resume needs only its name.

    On the kubernetes and chameleon profiles each worker is a pod (``gpus`` GPUs each) and
    ``dry_run`` returns the Kubernetes objects instead; locally ``gpus`` selects devices for
    every worker (CUDA_VISIBLE_DEVICES).
    """
    if trials < 1:
        raise InvalidInputError("--trials must be at least 1")
    if platform.profile.name in CLUSTER_PROFILES:
        from chiml.lifecycle.remote_tune import run_study_on_cluster

        return run_study_on_cluster(
            platform, target, trials=trials, workers=workers, study_name=study_name, metric=metric,
            direction=direction, sampler=sampler, pruner=pruner, params=params, experiment=experiment,
            timeout=timeout, threads_per_worker=threads_per_worker, seed=seed, args=args,
            max_restarts=max_restarts, progress=progress, gpus=gpus or 0, dry_run=dry_run, cwd=cwd,
        )  # fmt: skip
    if dry_run:
        from chiml.errors import NotSupportedError

        raise NotSupportedError("--dry-run is for cluster profiles: on the local profile the workers are processes")
    training = platform.config.training
    workers = workers or training.tune_workers
    threads = threads_per_worker or training.threads_per_worker
    workdir = Path(cwd) if cwd is not None else Path.cwd()
    resolved = resolve(target, cwd=workdir)  # before creating anything
    devices = worker_devices(gpus, workers)
    if sampler is not None:
        make_sampler(sampler, None)  # unknown or unavailable: fail here, not in K workers
    if pruner is not None:
        make_pruner(pruner)
    declared = resolved.declared_objective()  # ct.objective("val_accuracy", "maximize") in the script
    if declared is not None:
        metric = metric or declared[0]
        direction = direction or declared[1]
    storage_url = platform.optuna_storage
    storage = open_storage(storage_url)
    name = study_name or f"{_safe(resolved.label)}-{time.strftime('%Y%m%d-%H%M%S')}"
    study, settings = open_study(
        storage, name, direction, metric, sampler, pruner, resolved.spec, (training.tune_sampler, training.tune_pruner)
    )

    mlflow_client.configure_client_env()
    client = mlflow_client.connect(platform)
    experiment = experiment or settings.get("experiment") or training.experiment
    experiment_id = mlflow_client.experiment_id(client, experiment)
    study.set_user_attr("chiml.experiment", experiment)
    _fail_orphans(study, client)
    parent_run_id = _parent_run(client, study, experiment_id, settings)

    log_dir = Path(platform.home) / "studies" / _safe(name)
    log_dir.mkdir(parents=True, exist_ok=True)
    spec = WorkerSpec(
        storage=storage_url,
        study=name,
        target=resolved.spec,
        goal=counted(study) + trials,
        tracking_uri=platform.tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        tb_root=str(Path(platform.tensorboard_logdir) / _safe(experiment) / _safe(name)),
        metric=settings["metric"],
        sampler=settings["sampler"],
        pruner=settings["pruner"],
        seed=seed,
        threads=threads,
        deadline=time.time() + timeout if timeout else None,
        lock_path=str(log_dir / "ask.lock"),
        overrides=dict(params or {}),
        args=list(args or []),
    )
    pool = _WorkerPool(spec, log_dir, threads, client, workdir, devices)
    status = "FAILED"
    try:
        pool.run(workers, max_restarts if max_restarts is not None else 2 + workers, study, progress)
        status = "FINISHED"
    except ChimlError:
        raise
    except BaseException:  # Ctrl-C and the unexpected: stop workers, close the parent run as KILLED
        status = "KILLED"
        raise
    finally:
        pool.stop_all()
        _fail_orphans(study, client, pids=pool.pids)
        where = describe_storage(storage_url)
        result = _finish(client, platform.tracking_uri, study, experiment_id, parent_run_id, status, pool, where)
    if result.n_complete == 0:
        detail = pool.last_error() or "see the worker logs"
        raise ChimlError(f"study {name}: no trial completed: {detail}", hint=f"logs in {log_dir}")
    return result


def _parent_run(client: Any, study: optuna.Study, experiment_id: str, settings: dict[str, Any]) -> str:
    """The study's MLflow parent run: the one from earlier sessions if it still exists."""
    from mlflow.exceptions import MlflowException

    previous = settings.get("mlflow_parent_run_id")
    if previous:
        try:
            run = client.get_run(previous)
            if run.info.lifecycle_stage == "active":
                client.update_run(previous, status="RUNNING")
                return previous
        except MlflowException:
            pass
    tags = parent_tags(study.study_name, settings)
    run = client.create_run(experiment_id, run_name=study.study_name, tags=tags)
    study.set_user_attr(PARENT_ATTR, run.info.run_id)
    return run.info.run_id


def parent_tags(study: str, settings: dict[str, Any]) -> dict[str, str]:
    """The study's parent run: found again by these tags (a cluster driver cannot read the study)."""
    return {
        "chiml.kind": "study",
        "chiml.study": study,
        "chiml.target": settings["target"],
        "chiml.direction": settings["direction"],
        "mlflow.source.name": settings["target"],
    }


def _fail_orphans(study: optuna.Study, client: Any, pids: set[int] | None = None) -> int:
    """Fail RUNNING trials whose worker on this machine is gone (or is in ``pids``); they do not
    count to the goal. Trials of workers on other hosts are left to Optuna's heartbeat: a process
    id means nothing off its own host.

    The user attribute marks them so the workers run a replacement trial; Optuna forbids
    changing a finished trial, hence attribute first, state second.
    """
    storage = study._storage
    failed = 0
    here = this_host()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(HOST_ATTR, here) != here:
            continue
        pid = trial.user_attrs.get(PID_ATTR)
        gone = pid is None or not psutil.pid_exists(pid) or (pids is not None and pid in pids)
        if not gone:
            continue
        with contextlib.suppress(Exception):  # another process may have finished it meanwhile
            storage.set_trial_user_attr(trial._trial_id, CRASHED_ATTR, True)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            failed += 1
        run = trial.user_attrs.get(RUN_ATTR)
        if run:  # its child run would stay RUNNING forever
            with contextlib.suppress(Exception):
                client.set_tag(run, "chiml.trial_state", "FAIL (worker died)")
                client.set_terminated(run, status="FAILED")
    return failed


class _WorkerPool:
    """Start, watch and replace the worker processes."""

    def __init__(self, spec: WorkerSpec, log_dir: Path, threads: int, client: Any, cwd: Path,
                 devices: list[str] | None = None) -> None:
        self.spec = spec
        self.cwd = cwd
        self.devices = devices
        self.client = client
        self.log_dir = log_dir
        self.threads = threads
        self.running: dict[int, tuple[subprocess.Popen[bytes], Path]] = {}
        self.pids: set[int] = set()
        self.logs: list[Path] = []
        self.restarts = 0
        self.config_error: str | None = None
        self._next_index = 0

    def _env(self, index: int) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.devices[index % len(self.devices)] if self.devices else ""
            if not self.devices:
                env["CHIML_DEVICE"] = "cpu"
        env.pop("MLFLOW_RUN_ID", None)  # workers create their own child runs
        n = str(self.threads)
        # One intra-op thread per worker: K workers on K cores beat K workers fighting over K·K threads.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
            env[var] = n
        env["CHIML_THREADS"] = n
        return env

    def start(self) -> None:
        index = self._next_index
        self._next_index += 1
        spec = WorkerSpec(**{**asdict(self.spec), "index": index})
        log = self.log_dir / f"worker-{index}.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "chiml.lifecycle.worker", json.dumps(asdict(spec))],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self._env(index),
                cwd=self.cwd,
                start_new_session=True,
            )
        self.running[process.pid] = (process, log)
        self.pids.add(process.pid)
        self.logs.append(log)

    def run(
        self,
        workers: int,
        max_restarts: int,
        study: optuna.Study,
        progress: Callable[[StudyProgress], None] | None,
    ) -> None:
        for _ in range(workers):
            self.start()
        while self.running:
            time.sleep(0.5)
            for pid, (process, log) in list(self.running.items()):
                code = process.poll()
                if code is None:
                    continue
                del self.running[pid]
                if code == 0:
                    continue
                if code == CONFIG_ERROR:
                    self.config_error = _tail(log)
                    continue
                # Died mid-study (crash, OOM kill, signal): fail its trial, replace it.
                _fail_orphans(study, self.client, pids={pid})
                if counted(study) < self.spec.goal and self.restarts < max_restarts and not self._past_deadline():
                    self.restarts += 1
                    self.start()
            if progress is not None:
                progress(_progress(study, self.spec.goal, len(self.running)))
        if self.config_error and not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            raise ChimlError(f"tuning workers could not start: {self.config_error}")

    def _past_deadline(self) -> bool:
        return self.spec.deadline is not None and time.time() >= self.spec.deadline

    def stop_all(self) -> None:
        for process, _ in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in self.running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.running.clear()

    def last_error(self) -> str | None:
        if self.config_error:
            return self.config_error
        for log in reversed(self.logs):
            text = _tail(log)
            if text:
                return text
        return None


def worker_devices(gpus: int | None, workers: int) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES per worker slot for ``gpus`` GPUs each: the visible GPUs dealt out in
    turn (workers share them when there are fewer than workers x gpus); [] hides GPUs; None: as is."""
    if gpus is None:
        return None
    if gpus == 0:
        return []
    from chiml.lifecycle.train import select_devices, visible_gpus

    current = os.environ.get("CUDA_VISIBLE_DEVICES")
    select_devices(gpus, current)  # fewer GPUs than one worker asks for: one clear error
    every = visible_gpus(current)
    return [",".join(every[(i * gpus + k) % len(every)] for k in range(gpus)) for i in range(max(1, workers))]


def _tail(path: Path, lines: int = 1) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    wanted = [line for line in content if line.strip() and not line.startswith((" ", "\t"))]
    return " | ".join(wanted[-lines:])[-500:]


def _progress(study: optuna.Study, goal: int, workers: int) -> StudyProgress:
    counts = {state: 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        if not lost(trial):
            counts[trial.state] += 1
    try:
        best = study.best_value
    except ValueError:
        best = None
    return StudyProgress(
        goal=goal,
        complete=counts[TrialState.COMPLETE],
        pruned=counts[TrialState.PRUNED],
        failed=counts[TrialState.FAIL],
        running=counts[TrialState.RUNNING],
        best_value=best,
        workers=workers,
    )


@dataclass
class BestTrial:
    """The best trial of a study, as recorded on its parent run."""

    number: int
    value: float
    params: dict[str, Any]
    run_id: str | None
    model_uri: str | None


def record_outcome(client: Any, parent_run_id: str, best: BestTrial | None, n_trials: int, logs: list[Path],
                   status: str) -> None:
    """Store the worker logs and the best trial on the parent run, then close it (FAILED when a
    finished session completed no trial at all)."""
    try:
        for log in logs:
            if log.exists() and log.stat().st_size:
                client.log_artifact(parent_run_id, str(log), artifact_path="worker-logs")
        if best is not None:
            client.log_metric(parent_run_id, "best_value", best.value, step=n_trials)
            tags = {
                "chiml.best_trial": str(best.number),
                "chiml.best_params": json.dumps(best.params, default=str)[:5000],
                "chiml.best_run_id": best.run_id or "",
                "chiml.best_model_uri": best.model_uri or "",
            }
            for key, value in tags.items():
                client.set_tag(parent_run_id, key, value)
        client.set_tag(parent_run_id, "chiml.n_trials", str(n_trials))
    finally:
        final = status if best is not None or status != "FINISHED" else "FAILED"
        client.set_terminated(parent_run_id, status=final)


def _finish(
    client: Any,
    tracking_uri: str,
    study: optuna.Study,
    experiment_id: str,
    parent_run_id: str,
    status: str,
    pool: _WorkerPool,
    storage: str,
) -> StudyResult:
    """Record the outcome on the parent run and close it."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = None
    if complete:
        trial = study.best_trial
        run_id = trial.user_attrs.get(RUN_ATTR)
        model_uri = mlflow_client.run_model_uri(client, experiment_id, run_id) if run_id else None
        assert trial.value is not None  # a COMPLETE trial has its value
        best = BestTrial(trial.number, float(trial.value), dict(trial.params), run_id, model_uri)
    record_outcome(client, parent_run_id, best, len(trials), pool.logs, status)
    return StudyResult(
        study_name=study.study_name,
        direction=study.direction.name.lower(),
        best_value=best.value if best is not None else None,
        best_params=best.params if best is not None else {},
        best_trial=best.number if best is not None else None,
        best_run_id=best.run_id if best is not None else None,
        model_uri=best.model_uri if best is not None else None,
        parent_run_id=parent_run_id,
        parent_run_url=mlflow_client.run_url(tracking_uri, experiment_id, parent_run_id),
        n_trials=len(trials),
        n_complete=len(complete),
        n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        n_failed=sum(t.state == TrialState.FAIL for t in trials),
        storage=storage,
        worker_restarts=pool.restarts,
        logs=[str(p) for p in pool.logs],
    )
