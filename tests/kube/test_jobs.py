"""The training Job and code ConfigMap chiml builds: schema-valid, wired to what this repo defines."""

from __future__ import annotations

import base64
import io
import os
import re
import tarfile
from pathlib import Path

import pytest
import yaml

import chiml
from chiml.errors import ChimlError
from chiml.images import load_catalog
from chiml.kube import incluster, jobs
from chiml.kube.incluster import SecretKey
from chiml.kube.releases import load_releases

from .fake_kube import FakeBatchV1Api, FakeCoreV1Api, api_exception
from .schemas import validate

REPO = Path(__file__).resolve().parents[2]
AGENT_MODULE = REPO / "terraform" / "modules" / "k3s-node" / "main.tf"
TRAINER_DOCKERFILE = REPO / "services" / "trainer" / "Dockerfile"


def make_job(**overrides: object) -> jobs.JobPlan:
    fields: dict[str, object] = {
        "name": "train-digits-abc123",
        "namespace": "chiml",
        "kind": "train",
        "command": ["python", "-m", "chiml.lifecycle.supervise"],
        "args": ["train.py", "--lr", "0.1"],
        "code": b"\x1f\x8b" + b"0" * 100,
        "env": {"MLFLOW_TRACKING_URI": "http://mlflow.chiml.svc:5000", "MLFLOW_RUN_ID": "r1"},
        "secret_env": {"AWS_ACCESS_KEY_ID": SecretKey("chiml-s3", "AWS_ACCESS_KEY_ID")},
        "image": load_catalog().ref("trainer"),
    }
    fields.update(overrides)
    return jobs.JobPlan(**fields)  # type: ignore[arg-type]


def terraform_gpu_labels() -> dict[str, str]:
    """The labels the agent module gives GPU nodes: `gpu_labels = var.gpu ? { ... } : ...`."""
    match = re.search(r"gpu_labels\s*=\s*var\.gpu\s*\?\s*\{([^}]*)\}", AGENT_MODULE.read_text())
    assert match, f"no gpu_labels in {AGENT_MODULE}"
    return dict(re.findall(r'"([^"]+)"\s*=\s*"([^"]+)"', match.group(1)))


# ----------------------------------------------------------------- the Job
@pytest.mark.parametrize(("gpus", "requirements"), [(0, False), (2, True)])
def test_job_and_config_map_are_schema_valid(gpus: int, requirements: bool) -> None:
    for obj in jobs.objects(make_job(gpus=gpus, timeout=90.5, requirements=requirements)):
        validate(obj)
    validate(jobs.config_map(make_job(), owner_uid="0b1c-uid"))


def test_job_runs_the_script_like_local_train() -> None:
    spec = jobs.job_object(make_job())["spec"]
    container = spec["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "chiml.lifecycle.supervise"]
    assert container["args"] == ["train.py", "--lr", "0.1"]
    assert container["workingDir"] == jobs.WORKDIR
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {e["name"]: e.get("value") for e in container["env"]}["MLFLOW_TRACKING_URI"] == "http://mlflow.chiml.svc:5000"
    assert spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert "activeDeadlineSeconds" not in spec


def test_requirements_are_installed_before_the_script_and_on_its_path() -> None:
    pod = jobs.job_object(make_job(requirements=True))["spec"]["template"]["spec"]
    unpack, install = pod["initContainers"]
    assert unpack["name"] == "unpack"  # the code is there before pip reads requirements.txt
    assert install["command"][:4] == ["python", "-m", "pip", "install"]
    assert install["command"][-2:] == ["-r", f"{jobs.WORKDIR}/requirements.txt"]
    target = install["command"][install["command"].index("--target") + 1]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["PYTHONPATH"] == target
    plain = jobs.job_object(make_job())["spec"]["template"]["spec"]
    assert [c["name"] for c in plain["initContainers"]] == ["unpack"]
    assert "PYTHONPATH" not in {e["name"] for e in plain["containers"][0]["env"]}


def test_timeout_becomes_the_active_deadline() -> None:
    assert jobs.job_object(make_job(timeout=90.2))["spec"]["activeDeadlineSeconds"] == 91


def test_gpus_request_nvidia_runtime_and_the_terraform_gpu_label() -> None:
    pod = jobs.job_object(make_job(gpus=2))["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["runtimeClassName"] == "nvidia"
    (key, value), = pod["nodeSelector"].items()
    assert terraform_gpu_labels()[key] == value


def test_cpu_job_has_no_gpu_settings() -> None:
    pod = jobs.job_object(make_job(gpus=0))["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert "runtimeClassName" not in pod and "nodeSelector" not in pod


def test_pod_runs_as_the_trainer_images_user() -> None:
    uid = re.search(r"useradd --uid (\d+)", TRAINER_DOCKERFILE.read_text())
    assert uid and int(uid.group(1)) == jobs.TRAINER_UID
    pod = jobs.job_object(make_job())["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert container["securityContext"]["runAsUser"] == jobs.TRAINER_UID
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_credentials_reach_the_pod_only_as_secret_references() -> None:
    job = jobs.job_object(make_job(env={"URL": "postgresql://$(AWS_ACCESS_KEY_ID)@db:5432/x"}))
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    # listed first, so that later values may refer to them as $(NAME), as Kubernetes expands them
    assert env[0] == {"name": "AWS_ACCESS_KEY_ID",
                      "valueFrom": {"secretKeyRef": {"name": "chiml-s3", "key": "AWS_ACCESS_KEY_ID"}}}
    assert env[1]["name"] == "URL"


def test_trainer_image_comes_from_the_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    from chiml.lifecycle.cluster import trainer_image

    monkeypatch.delenv("CHIML_IMAGE_REGISTRY", raising=False)
    catalog = load_catalog()
    assert trainer_image(None, 0) == catalog.ref("trainer") == f"ghcr.io/chiml-project/trainer:{chiml.__version__}"
    # a GPU pod gets the CUDA build of torch: the catalog's `cuda` variant
    assert "cuda" in {variant.name for variant in catalog.get("trainer").variants}
    assert trainer_image(None, 1) == catalog.ref("trainer", "cuda")
    assert trainer_image("registry.example/t:1", 1) == "registry.example/t:1"


@pytest.mark.parametrize(
    ("example", "cpu", "gpu"),
    [
        ("digits_torch", None, "cuda"),  # torch and scikit-learn: the base image
        ("xgboost_tabular", "classic", "classic-cuda"),
        ("keras_digits", "tensorflow", "tensorflow-cuda"),
        ("jax_digits", "jax", "jax-cuda"),
        ("transformers_text", "torch", "torch-cuda"),
        ("lightning_digits", "torch", "torch-cuda"),
    ],
)
def test_a_jobs_trainer_variant_has_what_its_code_imports(example: str, cpu: str | None, gpu: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from chiml.lifecycle.cluster import trainer_image

    monkeypatch.delenv("CHIML_IMAGE_REGISTRY", raising=False)
    catalog = load_catalog()
    code = jobs.package_folder(REPO / "examples" / example, 10 * 2**20)
    assert trainer_image(None, 0, code) == catalog.ref("trainer", cpu)
    assert trainer_image(None, 1, code) == catalog.ref("trainer", gpu)
    assert trainer_image("registry.example/t:1", 1, code) == "registry.example/t:1"  # training.image wins


def test_every_trainer_variant_a_job_may_take_is_in_the_catalog() -> None:
    from chiml.frameworks import CODE_GROUPS, groups_imported
    from chiml.lifecycle.cluster import trainer_variant

    variants = {variant.name for variant in load_catalog().get("trainer").variants}
    choices = [set(), *({group} for group in CODE_GROUPS), set(CODE_GROUPS)]
    for groups in choices:
        for gpus in (0, 1):
            chosen = trainer_variant(groups, gpus)
            assert chosen is None or chosen in variants, (groups, gpus)
    # two groups imported: the variant holding every group
    assert trainer_variant({"classic", "jax"}, 0) == "notebooks"
    sources = ["import xgboost as xgb\nfrom lightning.pytorch import Trainer\n", "import os\nfrom . import local\n",
               "def broken(:\n"]
    assert groups_imported(sources) == {"classic", "torch"}


def test_indexed_job_for_parallel_workers_fails_at_once_on_a_configuration_error() -> None:
    spec = jobs.job_object(make_job(workers=4, retries=6, fatal_exit_codes=(2,), container="worker"))["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    assert spec["backoffLimit"] == 6
    (rule,) = spec["podFailurePolicy"]["rules"]
    assert rule == {"action": "FailJob", "onExitCodes": {"containerName": "worker", "operator": "In", "values": [2]}}
    validate(jobs.job_object(make_job(workers=4, retries=6, fatal_exit_codes=(2,), container="worker")))


def test_config_map_holds_the_code_and_is_owned_by_the_job() -> None:
    train = make_job()
    cm = jobs.config_map(train, owner_uid="uid-1")
    assert base64.b64decode(cm["binaryData"][jobs.CODE_KEY]) == train.code
    assert cm["metadata"]["ownerReferences"][0] == {
        "apiVersion": "batch/v1", "kind": "Job", "name": train.name, "uid": "uid-1", "blockOwnerDeletion": False}
    volume = jobs.job_object(train)["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    # no code and no files: no ConfigMap at all
    assert [o["kind"] for o in jobs.objects(make_job(code=None))] == ["Job"]


# ----------------------------------------------------------------- the in-cluster MLflow address
def test_in_cluster_mlflow_uri_comes_from_the_release_and_its_values(helm_dir: Path) -> None:
    release = load_releases(helm_dir).get("mlflow")
    values = yaml.safe_load((helm_dir / "values" / release.values).read_text())
    port = (values.get("service") or {}).get("port", incluster.MLFLOW_CHART_DEFAULT_PORT)
    assert incluster.mlflow_uri(helm_dir, "team-a") == f"http://{release.name}.team-a.svc:{port}"
    # change the values file: the address follows
    values["service"] = {"port": 5555}
    (helm_dir / "values" / release.values).write_text(yaml.safe_dump(values))
    assert incluster.mlflow_uri(helm_dir, "team-a") == f"http://{release.name}.team-a.svc:5555"


def test_optuna_database_is_the_one_optuna_dashboard_reads(helm_dir: Path) -> None:
    values = yaml.safe_load((helm_dir / "values" / "optuna-dashboard.yaml").read_text())["storage"]
    chart = yaml.safe_load((helm_dir / "charts" / "optuna-dashboard" / "values.yaml").read_text())["storage"]
    db = incluster.optuna_database(helm_dir, "team-a")
    assert db.host == f"{values['host']}.team-a.svc" and db.port == chart["port"]
    assert db.database == values["database"]
    assert db.password == incluster.SecretKey(values["existingSecret"], chart["passwordKey"])
    # the role's Secret is the one `chiml up` generates and CloudNativePG reads
    from chiml.kube.secrets import OPTUNA_PG_SECRET

    assert db.username.secret == OPTUNA_PG_SECRET
    doc = yaml.safe_load((helm_dir / "values" / "optuna-dashboard.yaml").read_text())
    doc["storage"].update(port=6543, existingSecret="other-secret")
    (helm_dir / "values" / "optuna-dashboard.yaml").write_text(yaml.safe_dump(doc))
    moved = incluster.optuna_database(helm_dir, "team-a")
    assert (moved.port, moved.password.secret) == (6543, "other-secret")


def test_tensorboard_log_root_is_the_one_the_clusters_tensorboard_watches(helm_dir: Path) -> None:
    values = yaml.safe_load((helm_dir / "values" / "tensorboard.yaml").read_text())["logdir"]
    logs = incluster.tensorboard_logs(helm_dir, "team-a")
    assert logs.uri == values["uri"] and logs.uri.startswith("s3://")
    assert logs.endpoint == values["s3Endpoint"].replace("${namespace}", "team-a")
    assert logs.access_key.secret == values["existingSecret"]


# ----------------------------------------------------------------- code packaging
def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return sorted(archive.getnames())


def test_package_honours_chimlignore_and_skips_caches(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "util.py").write_text("X = 1\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.csv").write_text("1,2\n")
    (tmp_path / "model.ckpt").write_bytes(b"x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"x")
    (tmp_path / ".chimlignore").write_text("# outputs and data\ndata/\n*.ckpt\n")
    assert _names(jobs.package_folder(tmp_path, 700 * 1024)) == [".chimlignore", "lib/util.py", "train.py"]


def test_package_is_reproducible(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    first = jobs.package_folder(tmp_path, 700 * 1024)
    (tmp_path / "train.py").touch()
    assert jobs.package_folder(tmp_path, 700 * 1024) == first


def test_package_over_the_limit_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "weights.bin").write_bytes(os.urandom(64 * 1024))
    with pytest.raises(ChimlError) as err:
        jobs.package_folder(tmp_path, 32 * 1024)
    assert "over the 32 KiB limit" in err.value.message and "weights.bin" in err.value.message
    assert ".chimlignore" in (err.value.hint or "")


def test_the_largest_allowed_package_fits_a_config_map() -> None:
    from chiml.config.training import TrainingConfig

    limit = TrainingConfig.model_fields["code_limit_bytes"].metadata
    most = max(getattr(m, "le", 0) or 0 for m in limit)
    assert most >= 700 * 1024
    core = FakeCoreV1Api()
    core.namespaces["chiml"] = None  # type: ignore[assignment]
    core.create_namespaced_config_map("chiml", jobs.config_map(make_job(code=b"x" * most)))
    assert ("chiml", "train-digits-abc123-code") in core.config_maps


# ----------------------------------------------------------------- the fake API rejects what the server would
def test_fake_api_rejects_an_invalid_job() -> None:
    core = FakeCoreV1Api()
    core.namespaces["chiml"] = None  # type: ignore[assignment]
    batch = FakeBatchV1Api(core)
    bad = jobs.job_object(make_job())
    bad["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(type(api_exception(422, "Invalid", ""))) as err:
        batch.create_namespaced_job("chiml", bad)
    assert err.value.status == 422
    assert not batch.jobs and not core.job_pods


# ----------------------------------------------------------------- the API wrapper
def test_job_api_shares_the_kubeapi_connection() -> None:
    from kubernetes import client

    from chiml.kube.jobapi import JobApi
    from chiml.kube.kubeapi import KubeApi

    api_client = client.ApiClient(client.Configuration(host="https://127.0.0.1:6443"))
    job_api = JobApi.from_kube(KubeApi(core=client.CoreV1Api(api_client), custom=None, host="https://127.0.0.1:6443"))
    assert job_api.batch.api_client is api_client


def test_log_stream_yields_whole_lines_across_chunks() -> None:
    import urllib3

    from chiml.kube.jobapi import JobApi

    text = "".join(f"step {i} {'x' * (i % 97)}\n" for i in range(400)) + "last line without newline"

    class Core:
        def read_namespaced_pod_log(self, *args: object, **kwargs: object) -> urllib3.HTTPResponse:
            assert kwargs["follow"] is True and kwargs["_preload_content"] is False
            return urllib3.HTTPResponse(body=io.BytesIO(text.encode()), preload_content=False)

    lines = list(JobApi(core=Core(), batch=None).stream_pod_log("chiml", "pod-1", container="train"))
    assert "".join(lines) == text
    assert all(line.endswith("\n") for line in lines[:-1]) and len(lines) == 401


def test_api_errors_become_one_line() -> None:
    from chiml.kube.jobapi import JobApi

    class Batch:
        def create_namespaced_job(self, namespace: str, body: object) -> None:
            raise api_exception(403, "Forbidden", 'jobs.batch is forbidden: User "u" cannot create resource "jobs"')

    with pytest.raises(ChimlError) as err:
        JobApi(core=None, batch=Batch()).create_job("chiml", jobs.job_object(make_job()))
    assert err.value.message == (
        'create Job train-digits-abc123: jobs.batch is forbidden: User "u" cannot create resource "jobs"')


# ----------------------------------------------------------------- the fake Job controller, as the real one behaves
def _controller(script: str, exit_code: int = 0) -> tuple[FakeCoreV1Api, FakeBatchV1Api]:
    from tests.kube.fake_kube import PodScript

    core = FakeCoreV1Api()
    core.namespaces["chiml"] = None  # type: ignore[assignment]
    core.add_node("node-0")
    return core, FakeBatchV1Api(core, PodScript(script, exit_code=exit_code))


def _settle(batch: FakeBatchV1Api, name: str, reads: int = 12) -> dict:
    for _ in range(reads):
        batch.read_namespaced_job(name, "chiml")
    return batch.jobs[("chiml", name)]


def test_fake_indexed_job_runs_one_pod_per_index_and_completes() -> None:
    core, batch = _controller("succeeded")
    batch.create_namespaced_job("chiml", jobs.job_object(make_job(workers=3, code=None)))
    job = _settle(batch, "train-digits-abc123")
    indexes = sorted(e["pod"]["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
                     for e in core.job_pods.values())
    assert indexes == ["0", "1", "2"]
    env = core.job_pods[next(iter(core.job_pods))]["pod"]["spec"]["containers"][0]["env"]
    assert env[0]["name"] == "JOB_COMPLETION_INDEX"  # the controller's own variable, from the annotation
    assert job["status"]["completedIndexes"] == "0,1,2" and job["status"]["succeeded"] == 3
    assert [c["type"] for c in job["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]


def test_fake_job_replaces_failed_pods_until_the_backoff_limit() -> None:
    core, batch = _controller("failed", exit_code=1)
    batch.create_namespaced_job("chiml", jobs.job_object(make_job(workers=2, retries=2, code=None)))
    job = _settle(batch, "train-digits-abc123", reads=20)
    # both first pods fail, both are replaced (2 failures: not over backoffLimit 2), both fail again
    assert job["status"]["failed"] == 4 and len(core.job_pods) == 4
    assert job["status"]["conditions"][-1]["reason"] == "BackoffLimitExceeded"
    assert job["status"]["active"] == 0


def test_fake_job_fails_at_once_on_a_pod_failure_policy_exit_code() -> None:
    _, batch = _controller("failed", exit_code=2)
    batch.create_namespaced_job("chiml", jobs.job_object(make_job(workers=2, retries=6, fatal_exit_codes=(2,),
                                                                  code=None)))
    job = _settle(batch, "train-digits-abc123")
    assert job["status"]["conditions"][-1]["reason"] == "PodFailurePolicy"
    assert "exit code 2 matching FailJob rule" in job["status"]["conditions"][-1]["message"]
    assert job["status"]["failed"] <= 2  # no retries


# Python 3.11.2's tarfile, as far as UNPACK can tell: no data_filter, no `filter=` argument
OLD_TARFILE = (
    "import tarfile; del tarfile.data_filter; _extract = tarfile.TarFile.extractall; "
    "tarfile.TarFile.extractall = lambda self, path='.', members=None, *, numeric_owner=False: "
    "_extract(self, path, members, numeric_owner=numeric_owner, filter='fully_trusted'); "
)


@pytest.mark.parametrize("old_python", [False, True], ids=["data-filter", "python-3.11.2"])
def test_the_init_containers_unpack_command_works_with_and_without_tarfiles_data_filter(
        tmp_path: Path, old_python: bool) -> None:
    """The trainer image's Python runs UNPACK; Debian 12's 3.11.2 has no `filter=` (found by the
    image test on the bookworm stand-in base). Without it, only relative plain files and folders."""
    import subprocess
    import sys

    prelude = OLD_TARFILE if old_python else ""

    def unpack(archive: Path, target: Path) -> None:
        target.mkdir()
        result = subprocess.run([sys.executable, "-c", prelude + jobs.UNPACK, str(archive), str(target)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr

    code = jobs.package_folder(REPO / "examples" / "digits_torch", 10 * 2**20)
    (tmp_path / "code.tar.gz").write_bytes(code)
    unpack(tmp_path / "code.tar.gz", tmp_path / "workspace")
    assert sorted(str(p.relative_to(tmp_path / "workspace")) for p in (tmp_path / "workspace").rglob("*")
                  if p.is_file()) == jobs.packed_files(code)
    # two members package_folder never makes: neither may land outside the folder
    with tarfile.open(tmp_path / "hostile.tar", "w") as tar:
        for name in ("../escaped.txt", f"{tmp_path}/absolute.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"no"))
    (tmp_path / "hostile").mkdir()
    refused = subprocess.run([sys.executable, "-c", prelude + jobs.UNPACK, str(tmp_path / "hostile.tar"),
                              str(tmp_path / "hostile")], capture_output=True, text=True, check=False)
    # the data filter refuses the archive (an error), the fallback skips the two members
    assert refused.returncode != 0 if not old_python else refused.returncode == 0, refused.stderr
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "absolute.txt").exists()
