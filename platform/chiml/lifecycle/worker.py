"""One tuning worker process: ``python -m chiml.lifecycle.worker SPEC_JSON``.

`chiml tune` starts K of these against the same study storage. Each loops ask → run the
target in-process as one trial → tell, until the study holds the wanted number of finished
trials. Every trial is an MLflow child run of the study's parent run. Each worker builds its
own sampler and pruner (they are not stored with a study); TPE uses ``constant_liar`` so that
parallel workers do not all sample the same point while their trials are still running.

Trials record the worker's pid (``chiml.worker_pid``): if a worker dies, `chiml tune` fails
its RUNNING trials and starts a replacement, so a crash costs one trial, never the study.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import optuna
from filelock import FileLock
from optuna.trial import TrialState

from chiml.errors import ChimlError
from chiml.lifecycle import metrics
from chiml.lifecycle.storage import open_storage
from chiml.lifecycle.target import resolve
from chiml.lifecycle.trial import begin_trial, end_trial

SAMPLERS = ("tpe", "random", "qmc", "gp", "cmaes")
PRUNERS = ("median", "hyperband", "successive-halving", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
CRASHED_ATTR = "chiml.crashed"
PID_ATTR = "chiml.worker_pid"
RUN_ATTR = "mlflow_run_id"


@dataclass
class WorkerSpec:
    """Everything a worker needs; `chiml tune` passes it as one JSON argument."""

    storage: str
    study: str
    target: str
    goal: int  # stop once this many trials are finished (crash-failed ones not counted) or running
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    tb_root: str
    index: int = 0
    metric: str | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None
    threads: int = 1
    deadline: float | None = None  # epoch seconds after which no new trial starts
    lock_path: str | None = None  # serializes "count, then ask" between workers of one machine
    overrides: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ChimlError("the cmaes sampler needs the 'cmaes' package", hint="pip install cmaes") from None
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ChimlError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        # Judge only from the 3rd trial and 2nd step on: the first steps of any run are noisy.
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ChimlError(f"unknown pruner {name!r}: choose one of {', '.join(PRUNERS)}")


def counted(study: optuna.Study) -> int:
    """Trials that count towards the goal: finished ones (minus crash victims) and running ones."""
    total = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.RUNNING or (
            trial.state in FINISHED and not trial.user_attrs.get(CRASHED_ATTR)
        ):
            total += 1
    return total


def run(spec: WorkerSpec) -> int:
    """The worker loop; returns how many trials this worker ran."""
    import mlflow

    os.environ["MLFLOW_TRACKING_URI"] = spec.tracking_uri
    mlflow.set_tracking_uri(spec.tracking_uri)
    target = resolve(spec.target)
    seed = None if spec.seed is None else spec.seed + spec.index
    study = optuna.load_study(
        study_name=spec.study,
        storage=open_storage(spec.storage),
        sampler=make_sampler(spec.sampler, seed),
        pruner=make_pruner(spec.pruner),
    )
    ran = 0
    while (trial := _next_trial(spec, study)) is not None:
        _run_trial(spec, study, trial, target)
        ran += 1
    return ran


def _next_trial(spec: WorkerSpec, study: optuna.Study) -> optuna.Trial | None:
    """Ask for a trial unless the goal is reached, under a lock: without it, two workers that
    finish together both see "one more to go" and the study overshoots its trial count."""
    if spec.deadline is not None and time.time() >= spec.deadline:
        return None
    lock = FileLock(spec.lock_path) if spec.lock_path else contextlib.nullcontext()
    with lock:
        if counted(study) >= spec.goal:
            return None
        trial = study.ask()
        trial.set_user_attr(PID_ATTR, os.getpid())
    return trial


def _run_trial(spec: WorkerSpec, study: optuna.Study, trial: optuna.Trial, target: Any) -> None:
    import mlflow

    name = f"trial-{trial.number:04d}"
    run = mlflow.start_run(
        experiment_id=spec.experiment_id,
        run_name=f"{spec.study}.{name}",
        parent_run_id=spec.parent_run_id,
        tags={"chiml.kind": "trial", "chiml.study": spec.study, "chiml.trial": str(trial.number)},
    )
    trial.set_user_attr(RUN_ATTR, run.info.run_id)
    tb_dir = os.path.join(spec.tb_root, name)
    ctx = begin_trial(trial, spec.overrides, spec.metric, tb_dir, run.info.run_id, spec.threads)
    state, value, error = TrialState.FAIL, None, None
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
    except SystemExit as exc:
        error = f"the script exited with status {exc.code}"
    except Exception:
        error = traceback.format_exc()
    finally:
        end_trial(success=state == TrialState.COMPLETE)
    if error:
        print(f"[{spec.study} {name}] failed: {error}", file=sys.stderr, flush=True)
        mlflow.set_tag("chiml.error", error[-5000:])
    mlflow.set_tag("chiml.trial_state", state.name)
    mlflow.end_run(status="FINISHED" if state != TrialState.FAIL else "FAILED")
    # A pruned trial is told without a value: Optuna records its last intermediate value.
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    print(f"[{spec.study} {name}] {state.name} value={value}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m chiml.lifecycle.worker SPEC_JSON", file=sys.stderr)
        return 2
    spec = WorkerSpec(**json.loads(args[0]))
    try:
        run(spec)
    except ChimlError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
