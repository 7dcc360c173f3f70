"""The Kubernetes objects of chiml's work on a cluster: batch/v1 Jobs and the ConfigMap they read.

Plain dicts (what ``kubectl apply`` takes and ``--dry-run`` prints); the kubernetes client sends
dicts unchanged. One builder serves every kind of work: a training run (one pod), a tuning
study (an Indexed Job, one pod per worker) and an optimize benchmark (one pod per runtime).

The user's code travels as a gzipped tar in the ConfigMap's ``binaryData``: an init container
(the Job's own image) unpacks it into an ``emptyDir`` at the working directory. No S3 upload is
needed, so a run leaves nothing behind but the Job, whose garbage collection removes the
ConfigMap too (the ConfigMap is owned by the Job). Credentials reach pods only as
``secretKeyRef`` env vars: a printed or stored Job never holds a password.
"""

from __future__ import annotations

import base64
import fnmatch
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from chiml.cluster import GPU_NODE_LABEL, GPU_RESOURCE
from chiml.errors import InvalidInputError
from chiml.kube.incluster import SecretKey

# The user of the trainer image (services/trainer/Dockerfile: uid/gid 10001).
TRAINER_UID = 10001

# The RuntimeClass k3s creates when it finds the NVIDIA container runtime.
GPU_RUNTIME_CLASS = "nvidia"

CODE_KEY = "code.tar.gz"
CODE_MOUNT = "/chiml/code"
WORKDIR = "/workspace"
IGNORE_FILE = ".chimlignore"
# A project's extra pip requirements, installed by an init container into the workspace.
REQUIREMENTS = "requirements.txt"
DEPS_DIR = f"{WORKDIR}/.chiml-deps"
# Never worth shipping: caches, VCS metadata, virtual environments.
ALWAYS_IGNORED = (".git/", "__pycache__/", "*.pyc", ".venv/", "venv/", ".ipynb_checkpoints/", "mlruns/")

MANAGED_LABELS = {"app.kubernetes.io/part-of": "chiml", "app.kubernetes.io/managed-by": "chiml"}
MANAGED_SELECTOR = ",".join(f"{key}={value}" for key, value in MANAGED_LABELS.items())
KIND_LABEL = "chiml.io/kind"
RUN_LABEL = "chiml.io/run-id"
# The Job controller's labels on its pods (Kubernetes >= 1.27 writes both spellings).
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


# ----------------------------------------------------------------- code packaging
def _ignore_patterns(folder: Path) -> list[str]:
    patterns = list(ALWAYS_IGNORED)
    ignore = folder / IGNORE_FILE
    if ignore.is_file():
        for line in ignore.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line)
    return patterns


def _ignored(rel: PurePosixPath, is_dir: bool, patterns: list[str]) -> bool:
    """gitignore-like: ``dir/`` matches directories only; a pattern with a ``/`` is anchored at the
    folder, one without matches any path component's name."""
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pat = pattern.rstrip("/")
        if dir_only and not is_dir:
            continue
        if "/" in pat:
            if fnmatch.fnmatchcase(str(rel), pat.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(rel.name, pat):
            return True
    return False


def package_folder(folder: Path, limit: int) -> bytes:
    """The folder as a reproducible tar.gz (sorted, mtime 0, owner-neutral), honouring .chimlignore.

    Raises one InvalidInputError naming the size and the biggest files when the archive exceeds ``limit``.
    """
    folder = folder.resolve()
    patterns = _ignore_patterns(folder)
    files: list[tuple[PurePosixPath, Path]] = []

    def walk(directory: Path) -> None:
        for entry in sorted(directory.iterdir()):
            rel = PurePosixPath(entry.relative_to(folder).as_posix())
            if entry.is_symlink():
                continue  # a link may point outside the folder: not shipped
            if _ignored(rel, entry.is_dir(), patterns):
                continue
            if entry.is_dir():
                walk(entry)
            elif entry.is_file():
                files.append((rel, entry))

    walk(folder)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=9) as archive:
        for rel, path in files:
            info = tarfile.TarInfo(str(rel))
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with path.open("rb") as handle:
                archive.addfile(info, handle)
    data = buffer.getvalue()
    if len(data) > limit:
        biggest = sorted(files, key=lambda f: f[1].stat().st_size, reverse=True)[:3]
        names = ", ".join(f"{rel} ({path.stat().st_size // 1024} KiB)" for rel, path in biggest)
        raise InvalidInputError(
            f"{folder} packs to {len(data) // 1024} KiB, over the {limit // 1024} KiB limit for code sent to "
            f"the cluster (largest: {names})",
            hint=f"list data and outputs in {folder / IGNORE_FILE} (gitignore patterns) and read data from S3",
        )
    return data


def packed_files(code: bytes) -> list[str]:
    """The file names in a package made by :func:`package_folder`."""
    with tarfile.open(fileobj=io.BytesIO(code), mode="r:gz") as archive:
        return sorted(archive.getnames())


def packed_sources(code: bytes) -> Iterator[str]:
    """The text of every ``.py`` file in a package made by :func:`package_folder`."""
    with tarfile.open(fileobj=io.BytesIO(code), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith(".py"):
                handle = archive.extractfile(member)
                if handle is not None:
                    yield handle.read().decode("utf-8", errors="replace")


# ----------------------------------------------------------------- objects
@dataclass
class JobPlan:
    """Everything one chiml Job is built from."""

    name: str
    namespace: str
    kind: str  # train | tune | optimize (the chiml.io/kind label)
    image: str
    command: list[str]
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # env vars from Secrets; listed first, so that ``env`` values may refer to them as $(NAME)
    secret_env: dict[str, SecretKey] = field(default_factory=dict)
    code: bytes | None = None  # the packaged folder, unpacked into WORKDIR before the container starts
    files: dict[str, str] = field(default_factory=dict)  # text files mounted read-only under CODE_MOUNT
    requirements: bool = False  # the package has a requirements.txt at its top
    container: str = "train"
    gpus: int = 0
    cpu: str = "1"
    memory: str = "4Gi"
    cpu_limit: str | None = None
    timeout: float | None = None
    ttl_seconds: int = 3600
    workers: int = 1  # > 1: an Indexed Job, one pod per index (JOB_COMPLETION_INDEX)
    retries: int = 0  # backoffLimit: pods that may fail before the Job does (0: never retried)
    fatal_exit_codes: tuple[int, ...] = ()  # exit codes that fail the whole Job at once (podFailurePolicy)
    run_as: int | None = TRAINER_UID  # None: the image's own (non-root) user
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def config_map_name(self) -> str:
        return f"{self.name}-code"

    @property
    def has_config_map(self) -> bool:
        return self.code is not None or bool(self.files)


def _labels(job: JobPlan) -> dict[str, str]:
    return {**MANAGED_LABELS, KIND_LABEL: job.kind, **job.labels}


def config_map(job: JobPlan, owner_uid: str | None = None) -> dict[str, Any]:
    """The code ConfigMap; owned by the Job once its uid is known, so it goes when the Job goes."""
    metadata: dict[str, Any] = {"name": job.config_map_name, "namespace": job.namespace, "labels": _labels(job)}
    if owner_uid:
        metadata["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": job.name, "uid": owner_uid, "blockOwnerDeletion": False}
        ]
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "immutable": True}
    if job.code is not None:
        body["binaryData"] = {CODE_KEY: base64.b64encode(job.code).decode("ascii")}
    if job.files:
        body["data"] = dict(sorted(job.files.items()))
    return body


def _security(job: JobPlan) -> dict[str, Any]:
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
    }
    if job.run_as is not None:
        context.update(runAsUser=job.run_as, runAsGroup=job.run_as)
    return context


def _env(job: JobPlan) -> list[dict[str, Any]]:
    secret = [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}}
        for name, ref in sorted(job.secret_env.items())
    ]
    return secret + [{"name": k, "value": v} for k, v in sorted(job.env.items())]


# The init container unpacks with Python's tarfile 'data' filter: no absolute paths, no links
# out of the folder, no device files (the trainer image has no tar binary guarantee). Pythons
# before 3.11.4 (Debian 12's 3.11.2, an image built on it) lack the filter: there only plain
# files and folders with relative names and no '..' are unpacked (package_folder makes no other).
UNPACK = (
    "import sys, tarfile; t = tarfile.open(sys.argv[1]); "
    "t.extractall(sys.argv[2], filter='data') if hasattr(tarfile, 'data_filter') else "
    "t.extractall(sys.argv[2], [m for m in t if (m.isfile() or m.isdir()) and not m.name.startswith('/') "
    "and '..' not in m.name.split('/')])"
)


def _init_containers(job: JobPlan) -> list[dict[str, Any]]:
    inits: list[dict[str, Any]] = []
    if job.code is not None:
        inits.append({
            "name": "unpack",
            "image": job.image,
            "command": ["python", "-c", UNPACK, f"{CODE_MOUNT}/{CODE_KEY}", WORKDIR],
            "volumeMounts": [
                {"name": "code", "mountPath": CODE_MOUNT, "readOnly": True},
                {"name": "workspace", "mountPath": WORKDIR},
            ],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "securityContext": _security(job),
        })
    if job.requirements:
        # pip of the image's venv, into the workspace; the script finds it on PYTHONPATH
        inits.append({
            "name": "requirements",
            "image": job.image,
            "command": ["python", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
                        "--target", DEPS_DIR, "-r", f"{WORKDIR}/{REQUIREMENTS}"],
            "env": [{"name": "HOME", "value": "/tmp"}],
            "volumeMounts": [{"name": "workspace", "mountPath": WORKDIR}, {"name": "tmp", "mountPath": "/tmp"}],
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
            "securityContext": _security(job),
        })
    return inits


def pod_spec(job: JobPlan) -> dict[str, Any]:
    """The pod template's spec (also what the image tests hand to their pod runner)."""
    resources: dict[str, Any] = {"requests": {"cpu": job.cpu, "memory": job.memory}, "limits": {"memory": job.memory}}
    if job.cpu_limit:
        resources["limits"]["cpu"] = job.cpu_limit
    env = _env(job)
    if job.requirements:
        env.append({"name": "PYTHONPATH", "value": DEPS_DIR})
    mounts: list[dict[str, Any]] = [{"name": "workspace", "mountPath": WORKDIR}, {"name": "tmp", "mountPath": "/tmp"}]
    if job.files:
        mounts.append({"name": "code", "mountPath": CODE_MOUNT, "readOnly": True})
    security: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if job.run_as is not None:
        security.update(runAsUser=job.run_as, runAsGroup=job.run_as, fsGroup=job.run_as)
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": security,
        "automountServiceAccountToken": False,
        "containers": [{
            "name": job.container,
            "image": job.image,
            "command": list(job.command),
            "args": list(job.args),
            "workingDir": WORKDIR,
            "env": env,
            "resources": resources,
            "volumeMounts": mounts,
            "securityContext": _security(job),
            # a failed container's last log lines become its termination message: the one-line
            # error chiml shows, even when the log is gone
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }],
        "volumes": [{"name": "workspace", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
    }
    inits = _init_containers(job)
    if inits:
        spec["initContainers"] = inits
    if job.has_config_map:
        spec["volumes"].insert(0, {"name": "code", "configMap": {"name": job.config_map_name}})
    if job.gpus > 0:
        resources["limits"][GPU_RESOURCE] = str(job.gpus)
        spec["runtimeClassName"] = GPU_RUNTIME_CLASS
        spec["nodeSelector"] = {GPU_NODE_LABEL: "true"}
        # the GPU operator's and NVIDIA's usual taint: tolerate it, harmless where absent
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return spec


def job_object(job: JobPlan) -> dict[str, Any]:
    """The batch/v1 Job, deleted ``ttl_seconds`` after it finishes."""
    spec: dict[str, Any] = {
        "backoffLimit": job.retries,  # 0 for a training run: a failed run is not silently retried
        "ttlSecondsAfterFinished": job.ttl_seconds,
        "template": {"metadata": {"labels": _labels(job)}, "spec": pod_spec(job)},
    }
    if job.workers > 1:
        spec.update(completionMode="Indexed", completions=job.workers, parallelism=job.workers)
    if job.fatal_exit_codes:
        # a configuration error fails every pod the same way: fail the Job at once, not after retries
        spec["podFailurePolicy"] = {"rules": [{
            "action": "FailJob",
            "onExitCodes": {"containerName": job.container, "operator": "In", "values": list(job.fatal_exit_codes)},
        }]}
    if job.timeout:
        spec["activeDeadlineSeconds"] = max(1, int(job.timeout + 0.999))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job.name, "namespace": job.namespace, "labels": _labels(job)},
        "spec": spec,
    }


def objects(job: JobPlan) -> list[dict[str, Any]]:
    """What submitting ``job`` creates, in creation order (for ``--dry-run``)."""
    return [job_object(job), *([config_map(job)] if job.has_config_map else [])]
