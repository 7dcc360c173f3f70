"""The rules of a chiml study, shared by the drivers (`chiml tune` here or on a cluster) and the workers.

A study remembers its settings (target, metric, sampler, pruner, experiment) as user attributes,
so a resume needs only its name. A trial counts towards a session's goal unless it was lost
with its worker: such a trial is replaced, never counted. A trial is known to be lost when its
worker process vanished here (``chiml.crashed``, set by the local driver) or when Optuna's
heartbeat failed it from another host (a FAIL that no worker told: it has no ``chiml.outcome``).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from chiml.errors import ChimlError, InvalidInputError

SAMPLERS = ("tpe", "random", "qmc", "gp", "cmaes")
PRUNERS = ("median", "hyperband", "successive-halving", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

# user attributes of trials
CRASHED_ATTR = "chiml.crashed"  # lost with its worker (set before the state, since finished trials are frozen)
OUTCOME_ATTR = "chiml.outcome"  # set by the worker just before it tells the trial
PID_ATTR = "chiml.worker_pid"
HOST_ATTR = "chiml.worker_host"
SESSION_ATTR = "chiml.session"
RUN_ATTR = "mlflow_run_id"
# user attribute of the study
PARENT_ATTR = "chiml.mlflow_parent_run_id"


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
    raise InvalidInputError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")


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
    raise InvalidInputError(f"unknown pruner {name!r}: choose one of {', '.join(PRUNERS)}")


def check_direction(direction: str | None) -> None:
    if direction is not None and direction not in ("minimize", "maximize"):
        raise InvalidInputError(f"--direction must be minimize or maximize, not {direction!r}")


def lost(trial: FrozenTrial) -> bool:
    """The trial was lost with its worker (crash, kill, stale heartbeat) and is to be replaced."""
    if trial.user_attrs.get(CRASHED_ATTR):
        return True
    return trial.state == TrialState.FAIL and OUTCOME_ATTR not in trial.user_attrs and PID_ATTR in trial.user_attrs


def counted(study: optuna.Study, session: str | None = None) -> int:
    """Trials that count towards a goal: finished ones (minus lost ones) and running ones; with
    ``session``, only that session's trials."""
    total = 0
    for trial in study.get_trials(deepcopy=False):
        if session is not None and trial.user_attrs.get(SESSION_ATTR) != session:
            continue
        if trial.state in (TrialState.RUNNING, TrialState.WAITING) or (trial.state in FINISHED and not lost(trial)):
            total += 1
    return total


def this_host() -> str:
    return socket.gethostname()


def open_study(
    storage: Any,
    name: str,
    direction: str | None,
    metric: str | None,
    sampler: str | None,
    pruner: str | None,
    target: str,
    defaults: tuple[str, str] = ("tpe", "median"),
    experiment: str | None = None,
) -> tuple[optuna.Study, dict[str, Any]]:
    """Create the study or load it to resume; returns it and its settings (given ones win).

    Safe to call from several processes at once (the tuning workers of a cluster study do).
    """
    check_direction(direction)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        existing = True
    except KeyError:
        study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                    direction="maximize" if direction == "maximize" else "minimize")
        existing = False
    stored = {k.removeprefix("chiml."): v for k, v in study.user_attrs.items() if k.startswith("chiml.")}
    if existing:
        current = study.direction.name.lower()
        if direction is not None and direction != current:
            raise InvalidInputError(f"study {name} is a {current} study; cannot resume it to {direction}")
        if stored.get("target") and stored["target"] != target:
            raise InvalidInputError(f"study {name} tunes {stored['target']}, not {target}",
                                    hint="pick another --study name")
    settings = {
        "target": target,
        "metric": metric if metric is not None else stored.get("metric"),
        "sampler": sampler or stored.get("sampler") or defaults[0],
        "pruner": pruner or stored.get("pruner") or defaults[1],
        "experiment": experiment or stored.get("experiment"),
        "mlflow_parent_run_id": stored.get("mlflow_parent_run_id"),
        "direction": study.direction.name.lower(),
    }
    for key in ("target", "metric", "sampler", "pruner", "experiment"):
        if settings[key] is not None:
            study.set_user_attr(f"chiml.{key}", settings[key])
    return study, settings


@contextlib.contextmanager
def ask_lock(storage_url: str, study: str, lock_path: str | None) -> Iterator[None]:
    """Serialize "count, then ask" among a study's workers: without it, two workers that finish
    together both see "one more to go" and the study overshoots its trial count.

    Workers of one machine share a lock file; workers on several hosts share a PostgreSQL
    advisory lock on the study's name, held by their own connection (released by the server if
    the worker dies holding it).
    """
    if lock_path is not None:
        from filelock import FileLock

        with FileLock(lock_path):
            yield
        return
    from chiml.lifecycle.storage import is_rdb_url

    if not is_rdb_url(storage_url) or not storage_url.startswith("postgresql"):
        yield  # one worker, or a storage without a shared lock: nothing to serialize against
        return
    import sqlalchemy

    engine = _lock_engine(storage_url)
    with engine.connect() as connection:
        key = sqlalchemy.text("SELECT pg_advisory_lock(hashtext(:name))")
        connection.execute(key, {"name": f"chiml.ask:{study}"})
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(hashtext(:name))"),
                               {"name": f"chiml.ask:{study}"})


_ENGINES: dict[str, Any] = {}


def _lock_engine(url: str) -> Any:
    import sqlalchemy

    if url not in _ENGINES:
        _ENGINES[url] = sqlalchemy.create_engine(url, pool_size=1, pool_pre_ping=True)
    return _ENGINES[url]


StaleCallback = Callable[[optuna.Study, FrozenTrial], None]
