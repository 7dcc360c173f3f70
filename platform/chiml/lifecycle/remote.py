"""`chiml train` on a cluster profile: the script runs as a Kubernetes Job, not on the laptop.

The laptop creates the MLflow run (through the ingress, as every client does), packages the
script's folder into a ConfigMap, and creates a Job whose pod gets the *in-cluster* MLflow URI
and the run id; nothing on the laptop is handed an in-cluster-only address. The pod's log is
streamed back through ``echo`` and stored with the run; the pod's final state decides the run's
status. Whatever happens (failure, Ctrl-C, timeout) the Job, its pod and the ConfigMap are
deleted before returning, unless ``detach`` asked to leave the run going (the Job's TTL and the
ConfigMap's owner reference then clean up after it).
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chiml.errors import ChimlError
from chiml.kube import jobs
from chiml.lifecycle.context import ENV_PARAMS, ENV_TB_LOGDIR

Echo = Callable[[str, str], None]

# Container waiting reasons that never resolve by waiting: the run fails with the kubelet's message.
FATAL_WAITING = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
}


@dataclass
class ClusterSite:
    """Where a cluster run goes: the API, the namespace, and MLflow as pods reach it."""

    api: Any  # chiml.kube.jobapi.JobApi (None in a dry run: nothing is contacted)
    namespace: str
    mlflow_uri: str  # in-cluster
    tensorboard_logdir: str


@dataclass
class PodOutcome:
    """How the pod ended: FINISHED / FAILED / KILLED, its exit code and a one-line reason."""

    status: str
    exit_code: int
    error: str | None = None


def cluster_site(platform: Any, connect: bool = True) -> ClusterSite:
    """The site of a kubernetes or chameleon profile (the chameleon profile's cluster is a
    kubernetes profile on the same CHIML_HOME)."""
    from chiml.kube.installer import helm_dir
    from chiml.kube.jobapi import JobApi
    from chiml.profiles.kubernetes import KubernetesProfile

    profile = platform.profile
    kube = profile if isinstance(profile, KubernetesProfile) else KubernetesProfile(profile.loaded)
    recorded = kube.state.get("kubernetes") or {}
    namespace = recorded.get("namespace", kube.kcfg.namespace)
    return ClusterSite(
        api=JobApi.from_kube(kube.api()) if connect else None,
        namespace=namespace,
        mlflow_uri=jobs.in_cluster_mlflow_uri(helm_dir(kube.loaded), namespace),
        tensorboard_logdir=kube.tensorboard_logdir(),
    )


def job_name(label: str) -> str:
    """A DNS-1123 name (<= 52 chars, room for the pod suffix), unique per run."""
    slug = re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:30].strip("-") or "run"
    return f"train-{slug}-{secrets.token_hex(3)}"


def build(
    platform: Any,
    site: ClusterSite,
    target: str,
    params: dict[str, Any],
    *,
    experiment: str,
    run_id: str,
    run_name: str | None,
    args: Sequence[str],
    gpus: int,
    timeout: float | None,
    cwd: Path,
    image: str | None,
    code: bytes | None = None,
) -> jobs.TrainJob:
    """The Job description of one run; packages the script's folder unless ``code`` is given."""
    cfg = platform.config.training
    script, folder = _script_in_folder(target, cwd)
    tb_dir = f"{site.tensorboard_logdir.rstrip('/')}/{_safe(experiment)}/{_safe(run_name or run_id)}"
    env = {
        "MLFLOW_TRACKING_URI": site.mlflow_uri,
        "MLFLOW_EXPERIMENT_NAME": experiment,
        "MLFLOW_RUN_ID": run_id,
        ENV_TB_LOGDIR: tb_dir,
        ENV_PARAMS: json.dumps(params, default=str),
        "PYTHONUNBUFFERED": "1",
    }
    code = code if code is not None else jobs.package_folder(folder, cfg.code_limit_bytes)
    return jobs.TrainJob(
        name=job_name(run_name or Path(script).stem),
        namespace=site.namespace,
        script=script,
        code=code,
        requirements=jobs.REQUIREMENTS in jobs.packed_files(code),
        env=env,
        image=image or cfg.image or jobs.trainer_image(),
        args=list(args),
        gpus=gpus,
        cpu=cfg.cpu,
        memory=cfg.memory,
        cpu_limit=cfg.cpu_limit,
        timeout=timeout,
        ttl_seconds=cfg.ttl_seconds,
        labels={jobs.RUN_LABEL: run_id} if re.fullmatch(r"[A-Za-z0-9]{1,63}", run_id) else {},
    )


def _script_in_folder(target: str, cwd: Path) -> tuple[str, Path]:
    """(what the pod runs, folder shipped): a script ships its folder; ``module:function`` ships cwd."""
    path = Path(target)
    if target.endswith(".py") or path.suffix == ".py":
        full = path if path.is_absolute() else cwd / path
        if not full.is_file():
            raise ChimlError(f"script not found: {full}")
        return full.name, full.parent
    return target, cwd


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name) or "_"


# ----------------------------------------------------------------- running on the cluster
def submit(api: Any, train: jobs.TrainJob) -> None:
    """Create the Job, then the code ConfigMap owned by it; on any failure nothing stays behind."""
    created = api.create_job(train.namespace, jobs.job_object(train))
    try:
        api.create_config_map(train.namespace, jobs.config_map(train, owner_uid=created["metadata"]["uid"]))
    except BaseException:
        cleanup(api, train)
        raise


def cleanup(api: Any, train: jobs.TrainJob) -> None:
    """Delete the Job with its pod (Background propagation) and the ConfigMap; absent is fine."""
    errors = []
    for delete in (api.delete_job, api.delete_config_map):
        name = train.name if delete == api.delete_job else f"{train.name}-code"
        try:
            delete(train.namespace, name)
        except ChimlError as err:
            errors.append(err.message)
    if errors:
        raise ChimlError("; ".join(errors), hint=f"kubectl -n {train.namespace} delete job {train.name}")


def follow(
    api: Any,
    train: jobs.TrainJob,
    echo: Echo,
    sink: Any,
    poll: float = 2.0,
    progress: Callable[[str], None] | None = None,
) -> PodOutcome:
    """Wait for the Job's pod, stream its log to ``echo`` and ``sink``, return how it ended."""
    streamed = False
    last_phase = None
    while True:
        pod = api.job_pod(train.namespace, train.name)
        if pod is None:
            job = api.read_job(train.namespace, train.name)
            failed = _job_failure(job)
            if failed:
                return PodOutcome("FAILED", -1, failed)
            time.sleep(poll)
            continue
        phase = pod.status.phase if pod.status else "Pending"
        if phase != last_phase and progress:
            progress(f"pod {pod.metadata.name}: {phase}")
            last_phase = phase
        if phase == "Pending":
            reason = _pending_failure(pod)
            if reason:
                return PodOutcome("FAILED", -1, reason)
        elif phase == "Running" and not streamed:
            _stream(api, train, pod, echo, sink)
            streamed = True
        elif phase in ("Succeeded", "Failed"):
            state = _container_state(pod)
            if not streamed and state is not None and state.terminated is not None:
                _stream(api, train, pod, echo, sink)  # a short run may end between two polls
            return _terminal(pod, api.read_job(train.namespace, train.name))
        time.sleep(poll)


def _stream(api: Any, train: jobs.TrainJob, pod: Any, echo: Echo, sink: Any) -> None:
    for line in api.stream_pod_log(train.namespace, pod.metadata.name, container="train"):
        sink.write(line)
        echo("stdout", line)


def _container_state(pod: Any, name: str = "train") -> Any:
    for status in (pod.status.container_statuses or []) if pod.status else []:
        if status.name == name:
            return status.state
    return None


def _pending_failure(pod: Any) -> str | None:
    for status in [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]:
        waiting = status.state.waiting if status.state else None
        if waiting is not None and waiting.reason in FATAL_WAITING:
            return f"{waiting.reason}: {(waiting.message or status.image or '').strip()}"
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False" and condition.reason == "Unschedulable":
            return f"no node can run the pod: {(condition.message or '').strip()}"
    return None


def _job_failure(job: dict[str, Any] | None) -> str | None:
    if job is None:
        return "the Job was deleted from the cluster"
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return f"{condition.get('reason')}: {condition.get('message') or ''}".strip()
    return None


def _terminal(pod: Any, job: dict[str, Any] | None) -> PodOutcome:
    if pod.status.phase == "Succeeded":
        return PodOutcome("FINISHED", 0)
    if pod.status.reason == "Evicted":
        return PodOutcome("FAILED", -1, f"Evicted: {(pod.status.message or '').strip()}")
    if pod.status.reason == "DeadlineExceeded" or (_job_failure(job) or "").startswith("DeadlineExceeded"):
        return PodOutcome("KILLED", -1, "DeadlineExceeded: the run passed --timeout")
    state = _container_state(pod)
    terminated = state.terminated if state is not None else None
    for init in pod.status.init_container_statuses or []:
        done = init.state.terminated if init.state else None
        if terminated is None and done is not None and done.exit_code != 0:
            return PodOutcome(
                "FAILED", -1, f"init container {init.name} exited with status {done.exit_code} ({done.reason}); "
                f"see `kubectl -n {pod.metadata.namespace} logs {pod.metadata.name} -c {init.name}`"
            )
    if terminated is None:
        return PodOutcome("FAILED", -1, _job_failure(job) or f"pod failed: {pod.status.reason or 'unknown reason'}")
    if terminated.reason == "OOMKilled":
        return PodOutcome("FAILED", terminated.exit_code, "OOMKilled: the script used more than training.memory")
    # a script's own non-zero exit is a FAILED run like on the laptop, not an infrastructure error
    return PodOutcome("FAILED", terminated.exit_code)


def run_on_cluster(
    platform: Any,
    target: str,
    params: dict[str, Any],
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    args: Sequence[str] = (),
    gpus: int = 0,
    tags: dict[str, str] | None = None,
    timeout: float | None = None,
    echo: Echo | None = None,
    on_start: Callable[[str, str], None] | None = None,
    progress: Callable[[str], None] | None = None,
    cwd: str | Path | None = None,
    detach: bool = False,
    dry_run: bool = False,
    image: str | None = None,
    site: ClusterSite | None = None,
    poll: float = 2.0,
) -> Any:
    """Run ``target`` as a Job; returns a TrainResult (or the objects, for ``dry_run``)."""
    from chiml.lifecycle import mlflow_client
    from chiml.lifecycle.train import TrainResult, _echo

    workdir = Path(cwd) if cwd is not None else Path.cwd()
    experiment = experiment or platform.config.training.experiment
    if dry_run:
        site = site or cluster_site(platform, connect=False)
        plan = build(platform, site, target, params, experiment=experiment, run_id="<created-at-submit>",
                     run_name=run_name, args=args, gpus=gpus, timeout=timeout, cwd=workdir, image=image)
        return jobs.objects(plan)
    # everything that can fail on the laptop's side fails before a run exists
    code = jobs.package_folder(_script_in_folder(target, workdir)[1], platform.config.training.code_limit_bytes)
    site = site or cluster_site(platform)
    mlflow_client.configure_client_env()
    tracking_uri = platform.tracking_uri
    client = mlflow_client.connect(platform)
    experiment_id = mlflow_client.experiment_id(client, experiment)
    run_tags = {
        "mlflow.source.name": target,
        "mlflow.source.type": "JOB",
        "chiml.kind": "train",
        "chiml.target": target,
        "chiml.where": f"kubernetes:{site.namespace}",
        "chiml.params": json.dumps(params, default=str)[:5000],
        **(tags or {}),
    }
    run = client.create_run(experiment_id, run_name=run_name, tags=run_tags)
    run_id = run.info.run_id
    status, exit_code = "FAILED", -1
    try:
        train = build(platform, site, target, params, experiment=experiment, run_id=run_id,
                      run_name=run.info.run_name or run_name, args=args, gpus=gpus, timeout=timeout,
                      cwd=workdir, image=image, code=code)
        client.set_tag(run_id, "chiml.job", f"{site.namespace}/{train.name}")
        submit(site.api, train)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    url = mlflow_client.run_url(tracking_uri, experiment_id, run_id)
    if on_start is not None:
        on_start(run_id, url)
    if detach:
        # the run stays RUNNING: the Job owns it now (its TTL and the ConfigMap's owner clean up)
        return TrainResult(run_id, url, "RUNNING", -1, None, experiment, experiment_id, env_tb(train))
    error: str | None = None
    with tempfile.TemporaryDirectory(prefix="chiml-train-") as logs:
        log_path = Path(logs, "pod.txt")
        try:
            with log_path.open("w", encoding="utf-8") as sink:
                outcome = follow(site.api, train, echo or _echo, sink, poll=poll, progress=progress)
            status, exit_code, error = outcome.status, outcome.exit_code, outcome.error
        except KeyboardInterrupt:
            status, error = "KILLED", "interrupted: the Job was deleted"
            raise
        except ChimlError as err:  # the API failed mid-run: the run did not finish
            error = err.message
            raise
        finally:
            try:
                cleanup(site.api, train)
            finally:
                _close(client, run_id, status, exit_code, error, log_path)
    model_uri = mlflow_client.run_model_uri(client, experiment_id, run_id)
    result = TrainResult(run_id, url, status, exit_code, model_uri, experiment, experiment_id, env_tb(train))
    if error:
        raise RemoteRunFailed(error, result)
    return result


class RemoteRunFailed(ChimlError):
    """The run ended FAILED or KILLED on the cluster; ``result`` has its run id and status."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(f"run {result.run_id} {result.status}: {message}")
        self.result = result


def env_tb(train: jobs.TrainJob) -> str:
    return train.env[ENV_TB_LOGDIR]


def _close(client: Any, run_id: str, status: str, exit_code: int, error: str | None, log: Path) -> None:
    try:
        if log.exists() and log.stat().st_size:
            client.log_artifact(run_id, str(log), artifact_path="logs")
        client.set_tag(run_id, "chiml.exit_code", str(exit_code))
        if error:
            client.set_tag(run_id, "chiml.error", error[:5000])
    finally:
        client.set_terminated(run_id, status=status)
