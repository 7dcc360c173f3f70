"""`chiml train` on a cluster profile: the script runs as a Kubernetes Job, not on the laptop.

The laptop creates the MLflow run (through the ingress, as every client does), packages the
script's folder into a ConfigMap, and creates a Job whose pod gets the *in-cluster* MLflow URI,
the run id and the TensorBoard log root on S3; nothing on the laptop is handed an
in-cluster-only address. The pod's container is :mod:`chiml.lifecycle.supervise`: it stores the
output with the run and closes the run itself, so a detached run ends closed too. The laptop
streams the pod's log through ``echo`` and turns what only Kubernetes knows (an image that
cannot be pulled, no GPU node, OOMKilled, eviction, the deadline) into the run's status and a
one-line error. Whatever happens (failure, Ctrl-C, timeout) the Job, its pod and the ConfigMap
are deleted before returning, unless ``detach`` asked to leave the run going (the Job's TTL and
the ConfigMap's owner reference then clean up after it; `chiml runs` follows it).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chiml.errors import ChimlError
from chiml.kube import jobs
from chiml.lifecycle import cluster
from chiml.lifecycle.cluster import ClusterSite, PodOutcome
from chiml.lifecycle.context import ENV_DEVICE, ENV_PARAMS, ENV_TB_LOGDIR
from chiml.lifecycle.supervise import close_run

Echo = Callable[[str, str], None]
CONTAINER = "train"
DRY_RUN_ID = "<created-at-submit>"


def build(
    platform: Any,
    site: ClusterSite,
    target: str,
    params: dict[str, Any],
    *,
    experiment: str,
    experiment_id: str,
    run_id: str,
    run_name: str | None,
    args: Sequence[str],
    gpus: int,
    timeout: float | None,
    cwd: Path,
    image: str | None,
    code: bytes | None = None,
) -> jobs.JobPlan:
    """The Job of one run; packages the script's folder unless ``code`` is given."""
    cfg = platform.config.training
    script, folder = cluster.script_in_folder(target, cwd)
    tb_env, secret_env = site.tensorboard_env(experiment, run_name or run_id)
    env = {
        "MLFLOW_TRACKING_URI": site.mlflow_uri,
        "MLFLOW_EXPERIMENT_NAME": experiment,
        "MLFLOW_EXPERIMENT_ID": experiment_id,
        "MLFLOW_RUN_ID": run_id,
        ENV_PARAMS: json.dumps(params, default=str),
        "PYTHONUNBUFFERED": "1",
        **tb_env,
    }
    if gpus == 0:
        env[ENV_DEVICE] = "cpu"
    code = code if code is not None else jobs.package_folder(folder, cfg.code_limit_bytes)
    return cluster.code_job(
        cfg, name=cluster.job_name("train", run_name or Path(script).stem), namespace=site.namespace, kind="train",
        container=CONTAINER, command=["python", "-m", "chiml.lifecycle.supervise"], args=[script, *args], env=env,
        secret_env=secret_env, code=code, gpus=gpus, run_id=run_id, image=image, cpu=cfg.cpu, timeout=timeout,
    )


# ----------------------------------------------------------------- following the pod
def follow(
    api: Any,
    plan: jobs.JobPlan,
    echo: Echo,
    sink: Any,
    poll: float = 2.0,
    progress: Callable[[str], None] | None = None,
) -> PodOutcome:
    """Wait for the Job's pod, stream its log to ``echo`` and ``sink``, return how it ended."""
    streamed = False
    last_phase = None
    while True:
        pod = api.job_pod(plan.namespace, plan.name)
        if pod is None:
            job = api.read_job(plan.namespace, plan.name)
            if job is None:
                return PodOutcome("KILLED", -1, "the Job was deleted from the cluster (cancelled)")
            failed = cluster.job_failure(job)
            if failed:
                return PodOutcome("FAILED", -1, failed)
            time.sleep(poll)
            continue
        phase = pod.status.phase if pod.status else "Pending"
        if phase != last_phase and progress:
            progress(f"pod {pod.metadata.name}: {phase}")
            last_phase = phase
        if phase == "Pending":
            reason = cluster.pending_failure(pod)
            if reason:
                return PodOutcome("FAILED", -1, reason)
        elif phase == "Running" and not streamed:
            _stream(api, plan, pod, echo, sink)
            streamed = True
        elif phase in ("Succeeded", "Failed"):
            state = cluster.container_state(pod, CONTAINER)
            if not streamed and state is not None and state.terminated is not None:
                _stream(api, plan, pod, echo, sink)  # a short run may end between two polls
            return cluster.terminal_outcome(pod, api.read_job(plan.namespace, plan.name), CONTAINER)
        time.sleep(poll)


def _stream(api: Any, plan: jobs.JobPlan, pod: Any, echo: Echo, sink: Any) -> None:
    for line in api.stream_pod_log(plan.namespace, pod.metadata.name, container=CONTAINER):
        sink.write(line)
        echo("stdout", line)


def finish_run(client: Any, run_id: str, outcome: PodOutcome, log: Path | None) -> str:
    """Close the run if its pod could not (it never started, or died with its container); returns
    the run's final status. An error only Kubernetes knows is added either way."""
    if client.get_run(run_id).info.status == "RUNNING":
        close_run(client, run_id, outcome.status, outcome.exit_code, [log] if log else [], error=outcome.error)
        return outcome.status
    if outcome.error:
        client.set_tag(run_id, "chiml.error", outcome.error[:5000])
    return str(client.get_run(run_id).info.status)


# ----------------------------------------------------------------- the run
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
    from chiml.lifecycle.supervise import echo_here
    from chiml.lifecycle.train import TrainResult

    workdir = Path(cwd) if cwd is not None else Path.cwd()
    experiment = experiment or platform.config.training.experiment
    if dry_run:
        site = site or cluster.cluster_site(platform, connect=False)
        plan = build(platform, site, target, params, experiment=experiment, experiment_id=DRY_RUN_ID,
                     run_id=DRY_RUN_ID, run_name=run_name, args=args, gpus=gpus, timeout=timeout, cwd=workdir,
                     image=image)
        return jobs.objects(plan)
    # everything that can fail on the laptop's side fails before a run exists
    code = jobs.package_folder(cluster.script_in_folder(target, workdir)[1], platform.config.training.code_limit_bytes)
    site = site or cluster.cluster_site(platform)
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
    try:
        plan = build(platform, site, target, params, experiment=experiment, experiment_id=experiment_id,
                     run_id=run_id, run_name=run.info.run_name or run_name, args=args, gpus=gpus, timeout=timeout,
                     cwd=workdir, image=image, code=code)
        client.set_tag(run_id, "chiml.job", f"{site.namespace}/{plan.name}")
        cluster.submit(site.api, plan)
    except BaseException as err:
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        close_run(client, run_id, status, -1, [], error=getattr(err, "message", None) or str(err) or None)
        raise
    url = mlflow_client.run_url(tracking_uri, experiment_id, run_id)
    if on_start is not None:
        on_start(run_id, url)
    tb_dir = plan.env[ENV_TB_LOGDIR]
    if detach:
        # the pod closes the run; the Job's TTL and the ConfigMap's owner reference clean up
        return TrainResult(run_id, url, "RUNNING", -1, None, experiment, experiment_id, tb_dir)
    outcome = PodOutcome("FAILED", -1)
    with tempfile.TemporaryDirectory(prefix="chiml-train-") as logs:
        log_path = Path(logs, "pod.txt")
        try:
            with log_path.open("w", encoding="utf-8") as sink:
                outcome = follow(site.api, plan, echo or echo_here, sink, poll=poll, progress=progress)
        except KeyboardInterrupt:
            outcome = PodOutcome("KILLED", -1, "interrupted: the Job was deleted")
            raise
        except ChimlError as err:  # the API failed mid-run: the run did not finish
            outcome.error = err.message
            raise
        finally:
            try:
                cluster.delete(site.api, plan.namespace, plan.name)
            finally:
                status = finish_run(client, run_id, outcome, log_path)
    model_uri = mlflow_client.run_model_uri(client, experiment_id, run_id)
    result = TrainResult(run_id, url, status, outcome.exit_code, model_uri, experiment, experiment_id, tb_dir)
    if outcome.error:
        raise RemoteRunFailed(outcome.error, result)
    return result


class RemoteRunFailed(ChimlError):
    """The run ended FAILED or KILLED on the cluster; ``result`` has its run id and status."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(f"run {result.run_id} {result.status}: {message}")
        self.result = result
