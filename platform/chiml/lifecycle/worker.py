"""One tuning worker process: ``python -m chiml.lifecycle.worker SPEC_JSON``.

`chiml tune` starts K of these against the same study storage: K processes here, or K pods of
an Indexed Job on a cluster. Each loops ask → run the target in-process as one trial → tell,
until the study (or this session, on a cluster) holds the wanted number of trials. Every trial
is an MLflow child run of the study's parent run. Each worker builds its own sampler and
pruner (they are not stored with a study); TPE uses ``constant_liar`` so that parallel workers
do not all sample the same point while their trials are still running.

A worker that dies loses at most the trial it was running. Here the driver sees its exit and
fails that trial; across hosts Optuna's heartbeat does it: while a trial runs its worker records
a heartbeat, and the next worker to ask for a trial fails any RUNNING trial whose heartbeat is
older than the grace period, and closes its MLflow run. Lost trials are replaced, never counted.
A worker told to stop (SIGTERM: Ctrl-C of the driver, a deleted Job) fails its trial and ends
its MLflow run KILLED before it exits.
"""

from __future__ import annotations

import json
import numbers
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat  # the storages that keep heartbeats (RDB, cached RDB)
from optuna.trial import FrozenTrial, TrialState

from chiml.errors import ChimlError
from chiml.lifecycle import metrics
from chiml.lifecycle.storage import Heartbeat, open_storage
from chiml.lifecycle.study import (
    CRASHED_ATTR,
    HOST_ATTR,
    OUTCOME_ATTR,
    PID_ATTR,
    RUN_ATTR,
    SESSION_ATTR,
    ask_lock,
    counted,
    make_pruner,
    make_sampler,
    open_study,
    this_host,
)
from chiml.lifecycle.target import resolve
from chiml.lifecycle.trial import begin_trial, end_trial

#: Exit status for a configuration error: restarting the worker would not help.
CONFIG_ERROR = 2
#: The storage URL when it is not in the spec (a cluster pod: Kubernetes fills in the credentials).
ENV_STORAGE = "CHIML_OPTUNA_STORAGE"
#: Set by the Job controller in every pod of an Indexed Job.
ENV_INDEX = "JOB_COMPLETION_INDEX"


@dataclass
class WorkerSpec:
    """Everything a worker needs; `chiml tune` passes it as one JSON argument."""

    storage: str  # "" reads $CHIML_OPTUNA_STORAGE
    study: str
    target: str
    goal: int  # stop once this many trials count (lost ones not counted): in the study, or in ``session``
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    tb_root: str
    index: int | None = 0  # None: $JOB_COMPLETION_INDEX
    metric: str | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None
    threads: int = 1
    deadline: float | None = None  # epoch seconds after which no new trial starts
    lock_path: str | None = None  # workers of one machine: a lock file; else a PostgreSQL advisory lock
    session: str | None = None  # count only this session's trials towards ``goal`` (a cluster study)
    create: dict[str, Any] | None = None  # open_study's settings, when the workers create the study
    heartbeat: tuple[int, int] | None = None  # (interval, grace) seconds; None: no heartbeat
    overrides: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)


class Stopped(BaseException):
    """SIGTERM: fail the running trial, close its run as KILLED, exit."""


def close_stale_run(study: optuna.Study, trial: FrozenTrial) -> None:
    """Heartbeat callback: the trial's worker died on some host; its MLflow run would stay RUNNING."""
    run_id = trial.user_attrs.get(RUN_ATTR)
    print(f"[{study.study_name} trial-{trial.number:04d}] lost with its worker "
          f"(no heartbeat from {trial.user_attrs.get(HOST_ATTR, '?')})", file=sys.stderr, flush=True)
    if not run_id:
        return
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        client.set_tag(run_id, "chiml.trial_state", "FAIL (worker died)")
        client.set_terminated(run_id, status="FAILED")
    except Exception as err:  # the next resume's driver sweeps it instead
        print(f"could not close run {run_id} of a lost trial: {err}", file=sys.stderr)


def run(spec: WorkerSpec) -> int:
    """The worker loop; returns how many trials this worker ran."""
    import mlflow

    os.environ["MLFLOW_TRACKING_URI"] = spec.tracking_uri
    mlflow.set_tracking_uri(spec.tracking_uri)
    target = resolve(spec.target)
    index = spec.index if spec.index is not None else int(os.environ.get(ENV_INDEX, "0"))
    seed = None if spec.seed is None else spec.seed + index
    url = spec.storage or os.environ.get(ENV_STORAGE, "")
    if not url:
        raise ChimlError(f"no study storage: the spec has none and ${ENV_STORAGE} is not set")
    beat = Heartbeat(*spec.heartbeat, on_stale=close_stale_run) if spec.heartbeat else None
    # One worker at a time opens the storage and the study: on a fresh database Optuna creates its
    # tables, and K workers doing that (or creating the study and writing its attributes) at once
    # race on the database's unique keys. A resumed study keeps its metric, sampler and pruner
    # unless the driver named new ones.
    with ask_lock(url, spec.study, spec.lock_path), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = open_storage(url, beat)
        if spec.create is not None:
            _, settings = open_study(storage, spec.study, **spec.create)
            spec.metric, spec.sampler, spec.pruner = settings["metric"], settings["sampler"], settings["pruner"]
    study = optuna.load_study(study_name=spec.study, storage=storage, sampler=make_sampler(spec.sampler, seed),
                              pruner=make_pruner(spec.pruner))
    ran = 0
    while (trial := _next_trial(spec, url, study)) is not None:
        # heartbeats from the moment the trial exists: starting its MLflow run may take a while
        with _Heartbeats(study, trial, spec.heartbeat[0] if spec.heartbeat else None):
            _run_trial(spec, study, trial, target)
        ran += 1
    return ran


def _next_trial(spec: WorkerSpec, url: str, study: optuna.Study) -> optuna.Trial | None:
    """Ask for a trial unless the goal is reached, under the study's ask lock."""
    if spec.deadline is not None and time.time() >= spec.deadline:
        return None
    with warnings.catch_warnings():
        # heartbeats with ask/tell: Optuna warns that they are meant for study.optimize, which
        # cannot hold a lock between counting and asking
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)
        with ask_lock(url, spec.study, spec.lock_path):
            if counted(study, spec.session) >= spec.goal:
                return None
            trial = study.ask()
            trial.set_user_attr(PID_ATTR, os.getpid())
            trial.set_user_attr(HOST_ATTR, this_host())
            if spec.session is not None:
                trial.set_user_attr(SESSION_ATTR, spec.session)
            if spec.heartbeat:
                _heartbeat_of(study).record_heartbeat(trial._trial_id)
    return trial


class _Heartbeats:
    """Record the trial's heartbeat every ``interval`` seconds while it runs."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, interval: int | None) -> None:
        self.study, self.trial, self.interval = study, trial, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> None:
        if self.interval:
            self.thread.start()

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def _beat(self) -> None:
        assert self.interval
        while not self.stop.wait(self.interval):
            try:
                _heartbeat_of(self.study).record_heartbeat(self.trial._trial_id)
            except Exception as err:  # a database hiccup: the next beat tries again
                print(f"heartbeat of trial {self.trial.number} not recorded: {err}", file=sys.stderr)


def _heartbeat_of(study: optuna.Study) -> BaseHeartbeat:
    storage = study._storage
    assert isinstance(storage, BaseHeartbeat), "heartbeats need a database storage"
    return storage


def _run_trial(spec: WorkerSpec, study: optuna.Study, trial: optuna.Trial, target: Any) -> None:
    import mlflow

    name = f"trial-{trial.number:04d}"
    tags = {"chiml.kind": "trial", "chiml.study": spec.study, "chiml.trial": str(trial.number)}
    if spec.session is not None:
        tags["chiml.session"] = spec.session
    run = mlflow.start_run(experiment_id=spec.experiment_id, run_name=f"{spec.study}.{name}",
                           parent_run_id=spec.parent_run_id, tags=tags)
    trial.set_user_attr(RUN_ATTR, run.info.run_id)
    tb_dir = f"{spec.tb_root.rstrip('/')}/{name}"
    state, value, error, stopped = TrialState.FAIL, None, None, False
    ctx = begin_trial(trial, spec.overrides, spec.metric, tb_dir, run.info.run_id, spec.threads)
    try:
        result = target.invoke(spec.args)
        if isinstance(result, numbers.Real) and not isinstance(result, bool):
            metrics.report(float(result))
        value = ctx.objective
        if value is None:
            error = "the trial reported no objective (log the --metric, call ct.report(), or return a number)"
        else:
            state = TrialState.COMPLETE
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except Stopped:
        stopped, error = True, "the worker was stopped"
    except SystemExit as exc:
        error = f"the script exited with status {exc.code}"
    except Exception:
        error = traceback.format_exc()
    finally:
        end_trial(success=state == TrialState.COMPLETE)
    if error:
        print(f"[{spec.study} {name}] failed: {error}", file=sys.stderr, flush=True)
        mlflow.set_tag("chiml.error", error[-5000:])
    told = True
    try:
        # a stopped trial is lost, not failed: a resumed study replaces it
        trial.set_user_attr(CRASHED_ATTR if stopped else OUTCOME_ATTR, True if stopped else state.name)
        # A pruned trial is told without a value: Optuna records its last intermediate value.
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        # another worker found no heartbeat for longer than the grace period and failed the trial
        # as lost (this worker stalled, e.g. a frozen node); it has been replaced: carry on
        told = False
        print(f"[{spec.study} {name}] already failed as lost (no heartbeat in time): result dropped",
              file=sys.stderr, flush=True)
    # the child run says what the study recorded
    mlflow.set_tag("chiml.trial_state", state.name if told else "FAIL (worker died)")
    if told and state == TrialState.COMPLETE:
        mlflow.set_tags({"chiml.objective": repr(value), "chiml.trial_params": json.dumps(trial.params, default=str)})
    ok = told and state != TrialState.FAIL
    mlflow.end_run(status="KILLED" if stopped else "FINISHED" if ok else "FAILED")
    print(f"[{spec.study} {name}] {state.name} value={value}", flush=True)
    if stopped:
        raise Stopped


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise Stopped


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m chiml.lifecycle.worker SPEC_JSON", file=sys.stderr)
        return CONFIG_ERROR
    spec = WorkerSpec(**json.loads(args[0]))
    signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        run(spec)
    except ChimlError as err:
        print(f"error: {err}", file=sys.stderr)
        return CONFIG_ERROR
    except Stopped:
        return 128 + signal.SIGTERM
    return 0


if __name__ == "__main__":
    sys.exit(main())
