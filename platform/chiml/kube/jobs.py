"""The Kubernetes objects of a training run on a cluster: a ConfigMap with the code, a batch/v1 Job.

Plain dicts (what ``kubectl apply`` takes and ``--dry-run`` prints); the kubernetes client sends
dicts unchanged. The code travels as a gzipped tar in the ConfigMap's ``binaryData``: an init
container (the trainer image) unpacks it into an ``emptyDir`` at the working directory, then the
trainer container runs ``python -m chiml.lifecycle.runner SCRIPT ARGS...``, exactly the command
``chiml train`` runs locally. No S3 upload is needed, so a run leaves nothing behind but the Job,
whose garbage collection removes the ConfigMap too (the ConfigMap is owned by the Job).
"""

from __future__ import annotations

import fnmatch
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import chiml
from chiml.cluster import GPU_NODE_LABEL, GPU_RESOURCE
from chiml.errors import ChimlError
from chiml.kube.releases import load_releases
from chiml.kube.values import RenderContext, load_values

# The trainer image (services/trainer/Dockerfile), tagged with the chiml version it carries.
# One parameter on purpose: image names are being centralised; callers pass ``image=``.
TRAINER_REPOSITORY = "ghcr.io/chiml-project/trainer"
# The user of the trainer image (services/trainer/Dockerfile: uid/gid 10001).
TRAINER_UID = 10001

# The RuntimeClass k3s creates when it finds the NVIDIA container runtime.
GPU_RUNTIME_CLASS = "nvidia"

# The community MLflow chart's service port when values leave `service.port` unset (chart 1.11.5).
MLFLOW_CHART_DEFAULT_PORT = 5000

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
KIND_LABEL = "chiml.io/kind"
RUN_LABEL = "chiml.io/run-id"


def trainer_image(version: str | None = None) -> str:
    """``ghcr.io/chiml-project/trainer:<chiml version>``."""
    return f"{TRAINER_REPOSITORY}:{version or chiml.__version__}"


def in_cluster_mlflow_uri(helm_dir: Path, namespace: str) -> str:
    """MLflow's Service as pods reach it, from helm/releases.yaml and helm/values/mlflow.yaml.

    The chart names its Service after the release (the release name contains the chart name)
    and listens on ``service.port``; the namespace is the release's. No basic auth in-cluster:
    the auth middleware sits on the ingress only.
    """
    releases = load_releases(helm_dir)
    release = releases.get("mlflow")
    ns = release.namespace_for(namespace)
    context = RenderContext(
        namespace=namespace, ingress_domain="unused", ingress_scheme="http", ingress_class="unused", storage_class="-"
    )
    values = load_values(releases.values_path(release), context)
    port = int((values.get("service") or {}).get("port") or MLFLOW_CHART_DEFAULT_PORT)
    name = values.get("fullnameOverride") or release.name
    return f"http://{name}.{ns}.svc:{port}"


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

    Raises one ChimlError naming the size and the biggest files when the archive exceeds ``limit``.
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
        raise ChimlError(
            f"{folder} packs to {len(data) // 1024} KiB, over the {limit // 1024} KiB limit for code sent to "
            f"the cluster (largest: {names})",
            hint=f"list data and outputs in {folder / IGNORE_FILE} (gitignore patterns) and read data from S3",
        )
    return data


def packed_files(code: bytes) -> list[str]:
    """The file names in a package made by :func:`package_folder`."""
    with tarfile.open(fileobj=io.BytesIO(code), mode="r:gz") as archive:
        return sorted(archive.getnames())


# ----------------------------------------------------------------- objects
@dataclass
class TrainJob:
    """Everything a training Job is built from."""

    name: str
    namespace: str
    script: str  # path relative to the packaged folder (or module:function)
    code: bytes
    env: dict[str, str]
    image: str
    args: list[str] = field(default_factory=list)
    gpus: int = 0
    cpu: str = "1"
    memory: str = "4Gi"
    cpu_limit: str | None = None
    timeout: float | None = None
    ttl_seconds: int = 3600
    requirements: bool = False  # the package has a requirements.txt at its top
    labels: dict[str, str] = field(default_factory=dict)


def _labels(job: TrainJob) -> dict[str, str]:
    return {**MANAGED_LABELS, KIND_LABEL: "train", **job.labels}


def config_map(job: TrainJob, owner_uid: str | None = None) -> dict[str, Any]:
    """The code ConfigMap; owned by the Job once its uid is known, so it goes when the Job goes."""
    import base64

    metadata: dict[str, Any] = {"name": f"{job.name}-code", "namespace": job.namespace, "labels": _labels(job)}
    if owner_uid:
        metadata["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": job.name, "uid": owner_uid, "blockOwnerDeletion": False}
        ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "binaryData": {CODE_KEY: base64.b64encode(job.code).decode("ascii")},
        "immutable": True,
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": TRAINER_UID,
        "runAsGroup": TRAINER_UID,
    }


# The init container unpacks with Python's tarfile 'data' filter: no absolute paths, no links
# out of the folder, no device files (the trainer image has no tar binary guarantee).
UNPACK = "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')"


def job_object(job: TrainJob) -> dict[str, Any]:
    """The batch/v1 Job: one pod, never retried, deleted ``ttl_seconds`` after it finishes."""
    resources: dict[str, Any] = {"requests": {"cpu": job.cpu, "memory": job.memory}, "limits": {"memory": job.memory}}
    if job.cpu_limit:
        resources["limits"]["cpu"] = job.cpu_limit
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": TRAINER_UID,
            "runAsGroup": TRAINER_UID,
            "fsGroup": TRAINER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
        "initContainers": [
            {
                "name": "unpack",
                "image": job.image,
                "command": ["python", "-c", UNPACK, f"{CODE_MOUNT}/{CODE_KEY}", WORKDIR],
                "volumeMounts": [
                    {"name": "code", "mountPath": CODE_MOUNT, "readOnly": True},
                    {"name": "workspace", "mountPath": WORKDIR},
                ],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "securityContext": _container_security(),
            }
        ],
        "containers": [
            {
                "name": "train",
                "image": job.image,
                "command": ["python", "-m", "chiml.lifecycle.runner"],
                "args": [job.script, *job.args],
                "workingDir": WORKDIR,
                "env": [{"name": k, "value": v} for k, v in sorted(job.env.items())],
                "resources": resources,
                "volumeMounts": [{"name": "workspace", "mountPath": WORKDIR}, {"name": "tmp", "mountPath": "/tmp"}],
                "securityContext": _container_security(),
            }
        ],
        "volumes": [
            {"name": "code", "configMap": {"name": f"{job.name}-code"}},
            {"name": "workspace", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if job.requirements:
        # pip of the trainer image's venv, into the workspace; the script finds it on PYTHONPATH
        # (the image's own packages stay first in line only for what requirements.txt does not name)
        pod_spec["initContainers"].append(
            {
                "name": "requirements",
                "image": job.image,
                "command": ["python", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
                            "--target", DEPS_DIR, "-r", f"{WORKDIR}/{REQUIREMENTS}"],
                "env": [{"name": "HOME", "value": "/tmp"}],
                "volumeMounts": [{"name": "workspace", "mountPath": WORKDIR}, {"name": "tmp", "mountPath": "/tmp"}],
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
                "securityContext": _container_security(),
            }
        )
        pod_spec["containers"][0]["env"].append({"name": "PYTHONPATH", "value": DEPS_DIR})
    if job.gpus > 0:
        resources["limits"][GPU_RESOURCE] = str(job.gpus)
        pod_spec["runtimeClassName"] = GPU_RUNTIME_CLASS
        pod_spec["nodeSelector"] = {GPU_NODE_LABEL: "true"}
        # the GPU operator's and NVIDIA's usual taint: tolerate it, harmless where absent
        pod_spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    spec: dict[str, Any] = {
        "backoffLimit": 0,  # a failed run is not silently retried
        "ttlSecondsAfterFinished": job.ttl_seconds,
        "template": {"metadata": {"labels": _labels(job)}, "spec": pod_spec},
    }
    if job.timeout:
        spec["activeDeadlineSeconds"] = max(1, int(job.timeout + 0.999))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job.name, "namespace": job.namespace, "labels": _labels(job)},
        "spec": spec,
    }


def objects(train: TrainJob) -> list[dict[str, Any]]:
    """What a run creates, in creation order (for ``--dry-run``)."""
    return [job_object(train), config_map(train)]
