"""Work on a cluster profile as Kubernetes Jobs: where it goes, and how a pod's state reads.

Shared by training runs (:mod:`chiml.lifecycle.remote`), tuning studies
(:mod:`chiml.lifecycle.remote_tune`), optimize benchmarks (:mod:`chiml.optimize.remote`) and
`chiml runs`. The laptop talks to the Kubernetes API and to MLflow through the ingress only;
the in-cluster addresses below go into pod specs and nowhere else.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chiml.errors import ChimlError
from chiml.kube import incluster, jobs
from chiml.kube.incluster import LogStore, OptunaDatabase
from chiml.lifecycle.context import ENV_TB_LOGDIR

# Container waiting reasons that never resolve by waiting: the pod fails with the kubelet's message.
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
    """Where cluster work goes: the API, the namespace, and the platform's services as pods reach them."""

    api: Any  # chiml.kube.jobapi.JobApi (None in a dry run: nothing is contacted)
    namespace: str
    mlflow_uri: str  # in-cluster
    logs: LogStore  # the TensorBoard log root on S3
    optuna: OptunaDatabase
    helm_dir: Path | None = None  # where the Helm layer is defined (the serving runtimes' resources)

    def tensorboard_env(self, *parts: str) -> tuple[dict[str, str], dict[str, incluster.SecretKey]]:
        """(env, secret env) that make a pod write TensorBoard events under ``<log root>/<parts>``:
        TensorBoard's S3 file system (boto3) reads S3_ENDPOINT and the AWS_* variables."""
        logdir = "/".join([self.logs.uri.rstrip("/"), *(safe_name(p) for p in parts)])
        env = {ENV_TB_LOGDIR: logdir, "S3_ENDPOINT": self.logs.endpoint, "AWS_REGION": self.logs.region}
        return env, {"AWS_ACCESS_KEY_ID": self.logs.access_key, "AWS_SECRET_ACCESS_KEY": self.logs.secret_key}


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
    helm = helm_dir(kube.loaded)
    return ClusterSite(
        api=JobApi.from_kube(kube.api()) if connect else None,
        namespace=namespace,
        mlflow_uri=incluster.mlflow_uri(helm, namespace),
        logs=incluster.tensorboard_logs(helm, namespace),
        optuna=incluster.optuna_database(helm, namespace),
        helm_dir=helm,
    )


def job_name(kind: str, label: str) -> str:
    """A DNS-1123 name (<= 52 chars: room for the pod suffix), unique per submission."""
    slug = re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:30].strip("-") or "run"
    return f"{kind}-{slug}-{secrets.token_hex(3)}"


def run_label(run_id: str) -> dict[str, str]:
    """The label that finds a run's Job (MLflow run ids are label-safe hex)."""
    return {jobs.RUN_LABEL: run_id} if re.fullmatch(r"[A-Za-z0-9]{1,63}", run_id) else {}


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name) or "_"


def script_in_folder(target: str, cwd: Path) -> tuple[str, Path]:
    """(what the pod runs, folder shipped): a script ships its folder; ``module:function`` ships cwd."""
    path = Path(target)
    if target.endswith(".py") or path.suffix == ".py":
        full = path if path.is_absolute() else cwd / path
        if not full.is_file():
            raise ChimlError(f"script not found: {full}")
        return full.name, full.parent
    return target, cwd


def trainer_variant(groups: set[str], gpus: int) -> str | None:
    """The trainer image variant (services/images.yaml) for code importing these framework groups.

    None of them: the base image (torch, scikit-learn); one: that group's variant; several: the
    notebooks variant, which holds every group. GPU pods take the variant's CUDA build."""
    from chiml.frameworks import CODE_GROUPS

    chosen = sorted(groups & set(CODE_GROUPS))
    variant = None if not chosen else chosen[0] if len(chosen) == 1 else "notebooks"
    if gpus > 0:
        return f"{variant}-cuda" if variant else "cuda"
    return variant


def trainer_image(configured: str | None, gpus: int, code: bytes | None = None) -> str:
    """``training.image``, else the trainer of services/images.yaml that has the frameworks the
    packed ``code`` imports (its CUDA build for GPU pods). An XGBoost script in the base image
    would fail at its first import; a script of plain torch should not pull TensorFlow."""
    if configured:
        return configured
    from chiml.frameworks import groups_imported
    from chiml.images import load_catalog

    groups = groups_imported(jobs.packed_sources(code)) if code else set()
    return load_catalog().ref("trainer", trainer_variant(groups, gpus))


def code_job(training: Any, *, name: str, namespace: str, kind: str, container: str, command: list[str],
             args: list[str], env: dict[str, str], secret_env: dict[str, incluster.SecretKey], code: bytes,
             gpus: int, run_id: str, image: str | None = None, **spec: Any) -> jobs.JobPlan:
    """A Job that runs the user's packed code in the trainer image, sized by the `training:` section
    (``spec`` sets the rest: cpu, timeout, workers, retries...)."""
    return jobs.JobPlan(
        name=name, namespace=namespace, kind=kind, container=container,
        image=image or trainer_image(training.image, gpus, code),
        command=command, args=args, env=env, secret_env=secret_env, code=code,
        requirements=jobs.REQUIREMENTS in jobs.packed_files(code),
        gpus=gpus, memory=training.memory, cpu_limit=training.cpu_limit, ttl_seconds=training.ttl_seconds,
        labels=run_label(run_id), **spec,
    )


# ----------------------------------------------------------------- submitting and removing
def submit(api: Any, plan: jobs.JobPlan) -> None:
    """Create the Job, then its ConfigMap owned by it; on any failure nothing stays behind."""
    created = api.create_job(plan.namespace, jobs.job_object(plan))
    if not plan.has_config_map:
        return
    try:
        api.create_config_map(plan.namespace, jobs.config_map(plan, owner_uid=created["metadata"]["uid"]))
    except BaseException:
        delete(api, plan.namespace, plan.name)
        raise


def delete(api: Any, namespace: str, name: str) -> None:
    """Delete a Job with its pods (Background propagation) and its ConfigMap; absent is fine."""
    errors = []
    for remove, what in ((api.delete_job, name), (api.delete_config_map, f"{name}-code")):
        try:
            remove(namespace, what)
        except ChimlError as err:
            errors.append(err.message)
    if errors:
        raise ChimlError("; ".join(errors), hint=f"kubectl -n {namespace} delete job {name}")


# ----------------------------------------------------------------- reading pods
@dataclass
class PodOutcome:
    """How a pod ended: FINISHED / FAILED / KILLED, its exit code and a one-line reason."""

    status: str
    exit_code: int
    error: str | None = None


def container_state(pod: Any, name: str) -> Any:
    for status in (pod.status.container_statuses or []) if pod.status else []:
        if status.name == name:
            return status.state
    return None


def pending_failure(pod: Any) -> str | None:
    """Why a Pending pod will never start (an image that cannot be pulled, no node that fits), or None."""
    if pod.status is None:
        return None
    for status in [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]:
        waiting = status.state.waiting if status.state else None
        if waiting is not None and waiting.reason in FATAL_WAITING:
            return f"{waiting.reason}: {(waiting.message or status.image or '').strip()}"
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False" and condition.reason == "Unschedulable":
            return f"no node can run the pod: {(condition.message or '').strip()}"
    return None


def job_failure(job: dict[str, Any] | None) -> str | None:
    """The Failed condition of a Job as one line (``reason: message``), or None while it has not failed."""
    if job is None:
        return "the Job was deleted from the cluster"
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return f"{condition.get('reason')}: {condition.get('message') or ''}".strip()
    return None


def job_finished(job: dict[str, Any] | None) -> bool:
    conditions = ((job or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)


def terminal_outcome(pod: Any, job: dict[str, Any] | None, container: str) -> PodOutcome:
    """How a pod in phase Succeeded or Failed ended, with the kubelet's reasons as one line."""
    if pod.status.phase == "Succeeded":
        return PodOutcome("FINISHED", 0)
    if pod.status.reason == "Evicted":
        return PodOutcome("FAILED", -1, f"Evicted: {(pod.status.message or '').strip()}")
    if pod.status.reason == "DeadlineExceeded" or (job_failure(job) or "").startswith("DeadlineExceeded"):
        return PodOutcome("KILLED", -1, "DeadlineExceeded: the run passed --timeout")
    state = container_state(pod, container)
    terminated = state.terminated if state is not None else None
    for init in pod.status.init_container_statuses or []:
        done = init.state.terminated if init.state else None
        if terminated is None and done is not None and done.exit_code != 0:
            return PodOutcome(
                "FAILED", -1, f"init container {init.name} exited with status {done.exit_code} ({done.reason}); "
                f"see `kubectl -n {pod.metadata.namespace} logs {pod.metadata.name} -c {init.name}`"
            )
    if terminated is None:
        return PodOutcome("FAILED", -1, job_failure(job) or f"pod failed: {pod.status.reason or 'unknown reason'}")
    if terminated.reason == "OOMKilled":
        return PodOutcome("FAILED", terminated.exit_code, "OOMKilled: the container used more than its memory limit")
    # a script's own non-zero exit is a FAILED run like on the laptop, not an infrastructure error
    return PodOutcome("FAILED", terminated.exit_code)


def last_line(message: str | None) -> str:
    """The last non-empty line of a termination message (a traceback's final line)."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""
