"""JupyterLab's chart as chiml installs it: every address and Secret it names is the one the rest
of the platform defines (never a copy that drifts), its image is the trainer's notebooks variant
from services/images.yaml, the GPU option lands on the nodes Terraform labels as GPU nodes, and
the token only ever travels by secretKeyRef. (Lint, schema, policy and checkov: test_charts.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from chiml.cluster import GPU_NODE_LABEL, GPU_RESOURCE
from chiml.images import load_catalog
from chiml.kube import incluster, jobs, secrets
from chiml.kube.values import load_values
from tests.chameleon.fakes import agent_labels

from .test_charts import CONTEXT, HELM_DIR, helm_binary, render

NAMESPACE = CONTEXT.namespace


def chiml_values() -> dict[str, Any]:
    """helm/values/jupyterlab.yaml as the installer hands it to helm (placeholders, images)."""
    values = load_values(HELM_DIR / "values" / "jupyterlab.yaml", CONTEXT)
    return load_catalog().apply("jupyterlab", values)


def rendered(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    values = chiml_values()
    for dotted, value in overrides.items():
        node = values
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    docs = render(helm_binary(), "jupyterlab", path)
    return {doc["kind"]: doc for doc in docs}


def container(docs: dict[str, Any]) -> dict[str, Any]:
    (only,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def env_of(docs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container(docs)["env"]}


def test_platform_addresses_and_secrets_are_the_platforms_own(tmp_path: Path) -> None:
    env = env_of(rendered(tmp_path))
    assert env["MLFLOW_TRACKING_URI"]["value"] == incluster.mlflow_uri(HELM_DIR, NAMESPACE)
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == f"http://{secrets.s3_endpoint_host(NAMESPACE)}"
    assert env["AWS_DEFAULT_REGION"]["value"] == secrets.S3_REGION
    made = {s.name: s for s in secrets.generate(NAMESPACE)}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secrets.S3_SECRET and ref["key"] in made[secrets.S3_SECRET].data
    tensorboard = load_values(HELM_DIR / "values" / "tensorboard.yaml", CONTEXT)["logdir"]
    assert env["CHIML_TENSORBOARD_LOGDIR"]["value"] == tensorboard["uri"]
    # Optuna: the database, host and role optuna-dashboard uses
    optuna = load_values(HELM_DIR / "values" / "optuna-dashboard.yaml", CONTEXT)["storage"]
    user, password = env["OPTUNA_DB_USER"]["valueFrom"]["secretKeyRef"], env["OPTUNA_DB_PASSWORD"]["valueFrom"][
        "secretKeyRef"]
    assert user["name"] == password["name"] == secrets.OPTUNA_PG_SECRET
    assert {user["key"], password["key"]} <= set(made[secrets.OPTUNA_PG_SECRET].data)
    storage = env["OPTUNA_STORAGE"]["value"]
    assert storage == (f"postgresql+psycopg2://$(OPTUNA_DB_USER):$(OPTUNA_DB_PASSWORD)@{optuna['host']}:5432/"
                       f"{optuna['database']}")
    # the names the Deployment refers to come before their use (Kubernetes expands $(VAR) in order)
    names = list(env)
    assert names.index("OPTUNA_DB_PASSWORD") < names.index("OPTUNA_STORAGE")


def test_token_is_a_generated_secret_passed_by_secret_key_ref_only(tmp_path: Path) -> None:
    docs = rendered(tmp_path)
    token = env_of(docs)["JUPYTER_TOKEN"]["valueFrom"]["secretKeyRef"]
    generated = {s.name: s for s in secrets.generate(NAMESPACE)}[secrets.JUPYTERLAB_SECRET]
    assert token == {"name": secrets.JUPYTERLAB_SECRET, "key": secrets.JUPYTERLAB_TOKEN_KEY}
    assert len(generated.data[secrets.JUPYTERLAB_TOKEN_KEY]) >= 32
    spec = container(docs)
    assert not any("token" in str(arg).lower() for arg in [*spec["command"], *spec["args"]])
    assert "Secret" not in docs, "the chart must not carry a token of its own"


def test_token_is_created_at_up_shown_by_status_and_removed_with_the_platform(kube_api) -> None:
    created = secrets.ensure_platform_secrets(kube_api, "chiml")
    assert secrets.JUPYTERLAB_SECRET in created
    stored = kube_api.core.secrets[("chiml", secrets.JUPYTERLAB_SECRET)]
    shown = secrets.read_platform_secrets(kube_api, "chiml")
    assert shown["jupyterlab_token"] and len(shown["jupyterlab_token"]) >= 32
    assert secrets.ensure_platform_secrets(kube_api, "chiml") == []  # generated once, never replaced
    assert kube_api.core.secrets[("chiml", secrets.JUPYTERLAB_SECRET)] is stored
    secrets.delete_platform_secrets(kube_api, "chiml")
    assert ("chiml", secrets.JUPYTERLAB_SECRET) not in kube_api.core.secrets


def test_image_is_the_notebooks_variant_and_gpu_takes_its_cuda_build(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHIML_IMAGE_REGISTRY", raising=False)
    catalog = load_catalog()
    cpu = rendered(tmp_path)
    pod = cpu["Deployment"]["spec"]["template"]["spec"]
    assert container(cpu)["image"] == catalog.ref("trainer", "notebooks")
    assert "runtimeClassName" not in pod and "nvidia.com/gpu" not in container(cpu)["resources"]["limits"]
    assert not pod.get("nodeSelector")

    gpu = rendered(tmp_path, gpu__enabled=True)
    pod = gpu["Deployment"]["spec"]["template"]["spec"]
    assert container(gpu)["image"] == catalog.ref("trainer", "notebooks-cuda")
    assert container(gpu)["resources"]["limits"][GPU_RESOURCE] == "1"
    # placed like a training Job that asks for a GPU (chiml.kube.jobs)
    job = jobs.job_object(jobs.JobPlan(name="t", namespace=NAMESPACE, kind="train", image="i", command=["python"],
                                       gpus=1))["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == job["runtimeClassName"]
    assert pod["nodeSelector"] == job["nodeSelector"] == {GPU_NODE_LABEL: "true"}
    assert all(toleration in pod["tolerations"] for toleration in job["tolerations"])
    # the label Terraform puts on GPU nodes, and only on them
    assert agent_labels(gpu=True)[GPU_NODE_LABEL] == "true" and agent_labels(gpu=False).get(GPU_NODE_LABEL) != "true"
    variants = {v.name: v for v in catalog.get("trainer").variants}
    assert variants["notebooks-cuda"].args["ACCELERATOR"] == "cuda"
    assert variants["notebooks-cuda"].args["FRAMEWORKS"] == variants["notebooks"].args["FRAMEWORKS"]


def test_notebooks_persist_on_a_kept_claim_and_the_rest_of_the_root_is_read_only(tmp_path: Path) -> None:
    docs = rendered(tmp_path)
    claim = docs["PersistentVolumeClaim"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["storageClassName"] == CONTEXT.storage_class
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    home = env_of(docs)["HOME"]["value"]
    assert volumes[mounts[home]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert f"--ServerApp.root_dir={home}" in container(docs)["args"]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert env_of(docs)["JUPYTER_RUNTIME_DIR"]["value"].startswith("/tmp/")
    assert container(docs)["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == jobs.TRAINER_UID  # the trainer image's user
    assert docs["Deployment"]["spec"]["strategy"]["type"] == "Recreate"  # ReadWriteOnce
    ephemeral = rendered(tmp_path, persistence__enabled=False)
    assert "PersistentVolumeClaim" not in ephemeral


def test_the_one_kernel_offered_is_the_one_the_image_installs(tmp_path: Path) -> None:
    from chiml.local.kernelspec import KERNEL_NAME

    args = container(rendered(tmp_path))["args"]
    assert f"--KernelSpecManager.allowed_kernelspecs={KERNEL_NAME}" in args
    dockerfile = (HELM_DIR.parent / "services" / "trainer" / "Dockerfile").read_text()
    assert "COPY platform/chiml/local/kernelspec.py /tmp/kernelspec.py" in dockerfile
    assert "/opt/venv/bin/python /tmp/kernelspec.py /opt/venv" in dockerfile
