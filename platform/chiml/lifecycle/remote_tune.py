"""`chiml tune` on a cluster profile: the workers are the pods of one Indexed Job.

K pods run :mod:`chiml.lifecycle.worker` against the platform's in-cluster PostgreSQL (the
database optuna-dashboard shows; the pods get its credentials as ``secretKeyRef`` env vars).
The workers create or load the study themselves and count this session's trials, under a
PostgreSQL advisory lock; Optuna's heartbeat finds a trial whose worker died on any node, and
the Job controller replaces the dead pod (``backoffLimit``), so a crash costs one trial.

The laptop never opens the database: it reaches MLflow through the ingress and the cluster
through the Kubernetes API, nothing else. Progress (trials done, best value) is read from the
study's MLflow child runs, which the workers tag with each trial's state, objective and
parameters; the outcome is computed from them too. Why MLflow and not a port-forward to the
database: MLflow is the service the laptop already reaches and is authorised for, every trial
is a child run anyway, and a port-forward would need the ``pods/portforward`` permission, a
local TCP relay and the database role's password on the laptop.

Whatever happens (done, a configuration error, Ctrl-C) the Job and its pods are deleted, the
worker logs are stored with the parent run, no trial run is left RUNNING, and the parent run
is closed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chiml.errors import ChimlError, InvalidInputError
from chiml.kube import jobs
from chiml.lifecycle import cluster, mlflow_client
from chiml.lifecycle.cluster import ClusterSite
from chiml.lifecycle.context import ENV_TB_LOGDIR
from chiml.lifecycle.study import check_direction, make_pruner, make_sampler
from chiml.lifecycle.target import resolve
from chiml.lifecycle.tune import BestTrial, StudyProgress, StudyResult, parent_tags, record_outcome
from chiml.lifecycle.worker import CONFIG_ERROR, ENV_STORAGE, WorkerSpec

CONTAINER = "worker"
# (interval, grace) in seconds: a worker records a heartbeat every 30 s while its trial runs; a
# trial silent for 2 minutes (longer than a pod's 30 s termination grace and a database restart)
# is lost with its worker and replaced
HEARTBEAT = (30, 120)
DRY_RUN_ID = "<created-at-submit>"
USER_ENV, PASSWORD_ENV = "CHIML_OPTUNA_USER", "CHIML_OPTUNA_PASSWORD"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "CHIML_THREADS")


class StudyFailed(ChimlError):
    """The study's Job failed on the cluster (a worker's configuration error, pods that cannot start),
    or was deleted (``cancelled``: `chiml runs cancel`)."""

    def __init__(self, message: str, cancelled: bool = False) -> None:
        super().__init__(message)
        self.cancelled = cancelled


@dataclass
class Session:
    """One `chiml tune` call on a cluster: its Job's name is the session its workers count."""

    name: str
    target: str  # what the pods run, relative to their working directory
    trials: int
    workers: int
    threads: int
    seed: int | None
    deadline: float | None
    params: dict[str, Any]
    args: list[str]
    gpus: int
    retries: int
    heartbeat: tuple[int, int]


def build(
    platform: Any,
    site: ClusterSite,
    session: Session,
    *,
    code: bytes,
    settings: dict[str, Any],
    experiment: str,
    experiment_id: str,
    parent_run_id: str,
) -> jobs.JobPlan:
    """The Indexed Job of one tuning session."""
    cfg = platform.config.training
    name, threads, gpus = session.name, session.threads, session.gpus
    tb_env, secret_env = site.tensorboard_env(experiment, settings["study"])
    tb_root = tb_env.pop(ENV_TB_LOGDIR)
    spec = WorkerSpec(
        storage="",  # $CHIML_OPTUNA_STORAGE: Kubernetes fills in the role's credentials
        study=settings["study"],
        target=session.target,
        goal=session.trials,
        session=name,
        tracking_uri=site.mlflow_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        tb_root=tb_root,
        index=None,  # $JOB_COMPLETION_INDEX
        metric=settings["metric"],
        sampler=settings["sampler"] or settings["defaults"][0],  # what the study remembers wins (create)
        pruner=settings["pruner"] or settings["defaults"][1],
        seed=session.seed,
        threads=threads,
        deadline=session.deadline,
        lock_path=None,  # workers on several nodes: the database's advisory lock
        create={key: settings[key] for key in ("direction", "metric", "sampler", "pruner", "target", "experiment",
                                               "defaults")},
        heartbeat=session.heartbeat,
        overrides=dict(session.params),
        args=list(session.args),
    )
    secret_env = {**secret_env, USER_ENV: site.optuna.username, PASSWORD_ENV: site.optuna.password}
    env = {
        "MLFLOW_TRACKING_URI": site.mlflow_uri,
        ENV_STORAGE: site.optuna.url(f"$({USER_ENV})", f"$({PASSWORD_ENV})"),
        "PYTHONUNBUFFERED": "1",
        **tb_env,
        **{var: str(threads) for var in THREAD_VARS},
    }
    if gpus == 0:
        env["CHIML_DEVICE"] = "cpu"
    return cluster.code_job(
        cfg, name=name, namespace=site.namespace, kind="tune", container=CONTAINER,
        command=["python", "-m", "chiml.lifecycle.worker"], args=[json.dumps(asdict(spec), default=str)], env=env,
        secret_env=secret_env, code=code, gpus=gpus, run_id=parent_run_id, cpu=str(threads),
        workers=session.workers, retries=session.retries, fatal_exit_codes=(CONFIG_ERROR,),
    )


def run_study_on_cluster(
    platform: Any,
    target: str,
    *,
    trials: int,
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
    gpus: int = 0,
    dry_run: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    site: ClusterSite | None = None,
    poll: float = 2.0,
    heartbeat: tuple[int, int] = HEARTBEAT,
) -> Any:
    """Run ``trials`` more trials of a study with ``workers`` pods; a StudyResult (or the objects, for ``dry_run``)."""
    training = platform.config.training
    workers = workers or training.tune_workers
    threads = threads_per_worker or training.threads_per_worker
    workdir = Path(cwd) if cwd is not None else Path.cwd()
    resolved = resolve(target, cwd=workdir)  # before creating anything
    script, folder = cluster.script_in_folder(target, workdir)
    for name_, check in ((sampler, lambda s: make_sampler(s, None)), (pruner, make_pruner)):
        if name_ is not None:
            check(name_)  # unknown or unavailable: fail here, not in K pods
    check_direction(direction)
    declared = resolved.declared_objective()
    if declared is not None:
        metric = metric or declared[0]
        direction = direction or declared[1]
    name = study_name or f"{cluster.safe_name(resolved.label)}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "'" in name or not name.strip():
        raise InvalidInputError(f"study name {name!r}: no quotes, not empty")
    settings: dict[str, Any] = {
        "study": name, "target": script, "direction": direction, "metric": metric, "sampler": sampler,
        "pruner": pruner, "experiment": experiment, "defaults": (training.tune_sampler, training.tune_pruner),
    }
    session = Session(
        name=cluster.job_name("tune", name), target=script, trials=trials, workers=workers, threads=threads,
        seed=seed, deadline=time.time() + timeout if timeout else None, params=dict(params or {}),
        args=list(args or []), gpus=gpus, retries=max_restarts if max_restarts is not None else 2 + workers,
        heartbeat=heartbeat,
    )
    code = jobs.package_folder(folder, training.code_limit_bytes)
    if dry_run:
        site = site or cluster.cluster_site(platform, connect=False)
        settings["experiment"] = experiment or training.experiment
        plan = build(platform, site, session, code=code, settings=settings, experiment=settings["experiment"],
                     experiment_id=DRY_RUN_ID, parent_run_id=DRY_RUN_ID)
        return jobs.objects(plan)
    site = site or cluster.cluster_site(platform)
    mlflow_client.configure_client_env()
    client = mlflow_client.connect(platform)
    previous = _previous_parent(client, name)
    if previous is not None:
        stored = previous.data.tags
        if stored.get("chiml.target") and stored["chiml.target"] != script:
            raise InvalidInputError(f"study {name} tunes {stored['chiml.target']}, not {script}",
                                    hint="pick another --study name")
        if direction is not None and stored.get("chiml.direction", direction) != direction:
            raise InvalidInputError(f"study {name} is a {stored['chiml.direction']} study; cannot resume it to "
                                    f"{direction}")
        experiment_id = previous.info.experiment_id
        experiment = client.get_experiment(experiment_id).name
        parent_run_id = previous.info.run_id
        client.update_run(parent_run_id, status="RUNNING")
    else:
        experiment = experiment or training.experiment
        experiment_id = mlflow_client.experiment_id(client, experiment)
        tags = parent_tags(name, {**settings, "direction": direction or "minimize"})
        parent_run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    settings["experiment"] = experiment
    try:
        plan = build(platform, site, session, code=code, settings=settings, experiment=experiment,
                     experiment_id=experiment_id, parent_run_id=parent_run_id)
        client.set_tag(parent_run_id, "chiml.job", f"{site.namespace}/{plan.name}")
        client.set_tag(parent_run_id, "chiml.where", f"kubernetes:{site.namespace}")
        cluster.submit(site.api, plan)
    except BaseException:
        client.set_terminated(parent_run_id, status="FAILED")
        raise
    status = "FAILED"
    watcher = _Watcher(site.api, plan, client, parent_run_id, direction_of(previous, direction), trials)
    try:
        watcher.run(progress, poll)
        status = "FINISHED"
    except StudyFailed as err:
        status = "KILLED" if err.cancelled else "FAILED"
        raise
    except ChimlError:
        raise
    except BaseException:  # Ctrl-C: the Job goes, its workers close their trials, the study run is KILLED
        status = "KILLED"
        raise
    finally:
        with tempfile.TemporaryDirectory(prefix="chiml-tune-") as logs:
            saved = _save_worker_logs(site.api, plan, Path(logs))
            try:
                cluster.delete(site.api, plan.namespace, plan.name)
            finally:
                _close_leftover_trials(client, parent_run_id, plan.name)
                best, counts = _outcome(client, parent_run_id, experiment_id, watcher.direction)
                record_outcome(client, parent_run_id, best, sum(counts.values()), saved, status)
    result = StudyResult(
        study_name=name,
        direction=watcher.direction,
        best_value=best.value if best else None,
        best_params=best.params if best else {},
        best_trial=best.number if best else None,
        best_run_id=best.run_id if best else None,
        model_uri=best.model_uri if best else None,
        parent_run_id=parent_run_id,
        parent_run_url=mlflow_client.run_url(platform.tracking_uri, experiment_id, parent_run_id),
        n_trials=sum(counts.values()),
        n_complete=counts["COMPLETE"],
        n_pruned=counts["PRUNED"],
        n_failed=counts["FAIL"],
        storage=site.optuna.describe(),
        worker_restarts=watcher.restarts,
        logs=[f"worker-logs/{path.name}" for path in saved],
    )
    if result.n_complete == 0:
        raise ChimlError(f"study {name}: no trial completed: {watcher.last_error or 'see the worker logs'}",
                         hint=f"worker logs are stored with MLflow run {parent_run_id}")
    return result


def direction_of(previous: Any, direction: str | None) -> str:
    if direction is not None:
        return direction
    if previous is not None:
        return str(previous.data.tags.get("chiml.direction") or "minimize")
    return "minimize"


def _previous_parent(client: Any, study: str) -> Any:
    """The study's parent run from an earlier session, in whichever experiment it lives."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.`chiml.kind` = 'study' and tags.`chiml.study` = "
                              f"'{study}'", order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def trial_runs(client: Any, parent_run_id: str, session: str | None = None) -> list[Any]:
    """The study's trial runs (every session's, or one session's)."""
    experiment = client.get_run(parent_run_id).info.experiment_id
    query = f"tags.mlflow.parentRunId = '{parent_run_id}'"
    if session is not None:
        query += f" and tags.`chiml.session` = '{session}'"
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment], filter_string=query, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _state(run: Any) -> str | None:
    """COMPLETE / PRUNED / FAIL for a finished trial run, RUNNING, or None for a stopped (lost) one."""
    if run.info.status == "RUNNING":
        return "RUNNING"
    if run.info.status == "KILLED":
        return None
    return str(run.data.tags.get("chiml.trial_state", "FAIL")).split(" ")[0]


def _best(runs: list[Any], direction: str) -> Any:
    scored = [r for r in runs if _state(r) == "COMPLETE" and "chiml.objective" in r.data.tags]
    if not scored:
        return None
    pick = max if direction == "maximize" else min
    return pick(scored, key=lambda r: float(r.data.tags["chiml.objective"]))


class _Watcher:
    """Follow the Job and the study's trial runs until the workers are done (or cannot go on)."""

    def __init__(self, api: Any, plan: jobs.JobPlan, client: Any, parent_run_id: str, direction: str,
                 trials: int) -> None:
        self.api, self.plan, self.client = api, plan, client
        self.parent_run_id, self.direction, self.trials = parent_run_id, direction, trials
        self.restarts = 0
        self.last_error: str | None = None

    def run(self, progress: Callable[[StudyProgress], None] | None, poll: float) -> None:
        namespace, name = self.plan.namespace, self.plan.name
        while True:
            job = self.api.read_job(namespace, name)
            if job is None:
                raise StudyFailed(f"the Job {name} was deleted from the cluster (cancelled)", cancelled=True)
            pods = self.api.job_pods(namespace, name)
            self.restarts = max(0, len(pods) - self.plan.workers)
            self._note_failures(pods)
            for pod in pods:
                if pod.status is not None and pod.status.phase == "Pending":
                    reason = cluster.pending_failure(pod)
                    if reason:
                        raise StudyFailed(f"tuning workers cannot start: {reason}")
            failed = cluster.job_failure(job)
            if failed:
                why = f": {self.last_error}" if self.last_error else ""
                raise StudyFailed(f"the tuning Job failed ({failed.split(':')[0]}){why}")
            if progress is not None:
                progress(self.snapshot(int((job.get("status") or {}).get("active") or 0)))
            if cluster.job_finished(job):
                return
            time.sleep(poll)

    def _note_failures(self, pods: list[Any]) -> None:
        for pod in pods:
            state = cluster.container_state(pod, CONTAINER)
            done = state.terminated if state is not None else None
            if done is not None and done.exit_code != 0:
                reason = "OOMKilled: a worker used more than training.memory" if done.reason == "OOMKilled" else (
                    cluster.last_line(done.message) or f"a worker exited with status {done.exit_code}")
                self.last_error = reason

    def snapshot(self, workers: int) -> StudyProgress:
        counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
        session_runs = trial_runs(self.client, self.parent_run_id, self.plan.name)
        for run in session_runs:
            state = _state(run)
            if state in counts:
                counts[state] += 1
        best = _best(trial_runs(self.client, self.parent_run_id), self.direction)
        return StudyProgress(goal=self.trials, complete=counts["COMPLETE"], pruned=counts["PRUNED"],
                             failed=counts["FAIL"], running=counts["RUNNING"],
                             best_value=float(best.data.tags["chiml.objective"]) if best else None, workers=workers)


def _save_worker_logs(api: Any, plan: jobs.JobPlan, folder: Path) -> list[Path]:
    """Every worker pod's log (replaced pods too), before the Job and its pods are deleted."""
    saved = []
    for pod in api.job_pods(plan.namespace, plan.name):
        text = api.pod_log(plan.namespace, pod.metadata.name, CONTAINER)
        if text:
            path = folder / f"{pod.metadata.name}.log"
            path.write_text(text, encoding="utf-8")
            saved.append(path)
    return saved


def _close_leftover_trials(client: Any, parent_run_id: str, session: str) -> None:
    """A trial run whose worker could not close it (killed at once, never got to the end)."""
    for run in trial_runs(client, parent_run_id, session):
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, "chiml.trial_state", "FAIL (worker stopped)")
            client.set_terminated(run.info.run_id, status="KILLED")


def _outcome(client: Any, parent_run_id: str, experiment_id: str, direction: str) -> tuple[BestTrial | None,
                                                                                           dict[str, int]]:
    runs = trial_runs(client, parent_run_id)
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
    for run in runs:
        state = _state(run)
        if state in counts:
            counts[state] += 1
    top = _best(runs, direction)
    if top is None:
        return None, counts
    best = BestTrial(
        number=int(top.data.tags.get("chiml.trial", -1)),
        value=float(top.data.tags["chiml.objective"]),
        params=json.loads(top.data.tags.get("chiml.trial_params") or "{}"),
        run_id=top.info.run_id,
        model_uri=mlflow_client.run_model_uri(client, experiment_id, top.info.run_id),
    )
    return best, counts
