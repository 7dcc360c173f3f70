"""`chiml train` on a cluster profile: a Job against the fake Kubernetes API, a real MLflow server.

Every path (success, non-zero exit, OOMKilled, eviction, image pull error, unschedulable GPU
request, Ctrl-C) must leave no Job, no pod and no ConfigMap behind, and close the MLflow run
with the right status.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from chiml.config import ChimlConfig
from chiml.errors import ChimlError
from chiml.kube import incluster, jobs
from chiml.lifecycle import mlflow_client
from chiml.lifecycle.cluster import ClusterSite
from chiml.lifecycle.remote import RemoteRunFailed, run_on_cluster
from chiml.lifecycle.train import run_training, select_devices
from tests.kube.fake_kube import PodScript
from tests.kube.schemas import validate

from .conftest import REPO, LifecyclePlatform
from .kube_cluster import HELM, NAMESPACE, Cluster, on_the_laptop, service_routes

LOGS = "epoch 1 loss 0.5\nepoch 2 loss 0.25\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.py").write_text("print('training')\n")
    (folder / "helpers.py").write_text("X = 1\n")
    return folder


def run(platform: LifecyclePlatform, cluster: Cluster, project: Path, lines: list[str] | None = None,
        **options: Any) -> Any:
    sink = lines if lines is not None else []
    return run_on_cluster(platform, str(project / "train.py"), {"epochs": 2}, site=cluster.site, poll=0,
                          echo=lambda stream, line: sink.append(line), **options)


def mlflow_run(platform: LifecyclePlatform, run_id: str) -> Any:
    return mlflow_client.client(platform.tracking_uri).get_run(run_id)


def test_success_streams_logs_and_cleans_up(platform: LifecyclePlatform, project: Path) -> None:
    cluster = Cluster(PodScript("succeeded", logs=LOGS))
    lines: list[str] = []
    result = run(platform, cluster, project, lines)
    assert (result.status, result.exit_code) == ("FINISHED", 0)
    assert "".join(lines) == LOGS
    cluster.assert_nothing_left()
    # the Job was schema-valid (the fake validates), ran the script with the in-cluster MLflow
    (job,) = cluster.batch.created
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == cluster.site.mlflow_uri != platform.tracking_uri
    assert env["MLFLOW_RUN_ID"] == result.run_id
    assert json.loads(env["CHIML_PARAMS"]) == {"epochs": 2}
    # TensorBoard events go to the S3 log root the cluster's TensorBoard watches, with its keys
    logs = incluster.tensorboard_logs(HELM, NAMESPACE)
    assert env["CHIML_TB_LOGDIR"].startswith(logs.uri + "/") and env["S3_ENDPOINT"] == logs.endpoint
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs["AWS_SECRET_ACCESS_KEY"] == {"name": logs.secret_key.secret, "key": logs.secret_key.key}
    assert container["command"] == ["python", "-m", "chiml.lifecycle.supervise"]
    assert container["args"] == ["train.py"]
    # the code went along, unpackable where the pod looks for it
    (cm,) = cluster.core.created_config_maps
    assert cm["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    archive = base64.b64decode(cm["binaryData"][jobs.CODE_KEY])
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["helpers.py", "train.py"]
    assert [c["name"] for c in job["spec"]["template"]["spec"]["initContainers"]] == ["unpack"]
    run_info = mlflow_run(platform, result.run_id)
    assert run_info.info.status == "FINISHED"
    assert run_info.data.tags["chiml.exit_code"] == "0"
    logged = mlflow_client.client(platform.tracking_uri).download_artifacts(result.run_id, "logs/pod.txt")
    assert Path(logged).read_text() == LOGS


def test_a_requirements_file_beside_the_script_is_installed(platform: LifecyclePlatform, project: Path) -> None:
    (project / "requirements.txt").write_text("tqdm==4.67.1\n")
    cluster = Cluster(PodScript("succeeded"))
    assert run(platform, cluster, project).status == "FINISHED"
    inits = cluster.batch.created[0]["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["unpack", "requirements"]
    cluster.assert_nothing_left()


def test_a_failing_requirements_install_is_one_line_naming_it(platform: LifecyclePlatform, project: Path) -> None:
    (project / "requirements.txt").write_text("no-such-package==0.0.0\n")
    cluster = Cluster(PodScript("init-failed"))
    with pytest.raises(RemoteRunFailed, match="init container requirements exited with status 1") as err:
        run(platform, cluster, project)
    cluster.assert_nothing_left()
    assert mlflow_run(platform, err.value.result.run_id).info.status == "FAILED"


def test_non_zero_exit_is_a_failed_run(platform: LifecyclePlatform, project: Path) -> None:
    cluster = Cluster(PodScript("failed", logs="Traceback: boom\n", exit_code=3))
    result = run(platform, cluster, project)
    assert (result.status, result.exit_code) == ("FAILED", 3)
    cluster.assert_nothing_left()
    assert mlflow_run(platform, result.run_id).info.status == "FAILED"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (PodScript("oom", logs="allocating\n"), "OOMKilled"),
        (PodScript("evicted"), "Evicted: The node was low on resource: memory"),
        (PodScript("image-pull"), "ErrImagePull"),
    ],
)
def test_pod_failures_are_one_line_errors(
    platform: LifecyclePlatform, project: Path, script: PodScript, expected: str
) -> None:
    cluster = Cluster(script)
    with pytest.raises(RemoteRunFailed) as err:
        run(platform, cluster, project)
    assert expected in err.value.message and "\n" not in err.value.message
    cluster.assert_nothing_left()
    info = mlflow_run(platform, err.value.result.run_id)
    assert info.info.status == "FAILED"
    assert expected in info.data.tags["chiml.error"]


def test_timeout_is_the_jobs_deadline_and_a_killed_run(platform: LifecyclePlatform, project: Path) -> None:
    cluster = Cluster(PodScript("deadline", logs="epoch 1\n"))
    with pytest.raises(RemoteRunFailed, match="DeadlineExceeded") as err:
        run(platform, cluster, project, timeout=30)
    assert cluster.batch.created[0]["spec"]["activeDeadlineSeconds"] == 30
    cluster.assert_nothing_left()
    assert mlflow_run(platform, err.value.result.run_id).info.status == "KILLED"


def test_gpu_request_without_a_gpu_node_fails_clearly(platform: LifecyclePlatform, project: Path) -> None:
    cluster = Cluster(PodScript("succeeded"))
    with pytest.raises(RemoteRunFailed) as err:
        run(platform, cluster, project, gpus=1)
    assert "no node can run the pod" in err.value.message and "nvidia.com/gpu" in err.value.message
    cluster.assert_nothing_left()


def test_gpu_request_lands_on_the_terraform_labelled_node(platform: LifecyclePlatform, project: Path) -> None:
    cluster = Cluster(PodScript("succeeded", logs=LOGS), gpu_nodes=1)
    assert run(platform, cluster, project, gpus=1).status == "FINISHED"
    cluster.assert_nothing_left()


def test_ctrl_c_deletes_the_job_and_marks_the_run_killed(platform: LifecyclePlatform, project: Path) -> None:
    cluster = Cluster(PodScript("running", logs=LOGS))
    created: list[str] = []

    def interrupt(stream: str, line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_on_cluster(platform, str(project / "train.py"), {}, site=cluster.site, poll=0, echo=interrupt,
                       on_start=lambda run_id, url: created.append(run_id))
    cluster.assert_nothing_left()
    assert any(call.endswith("Background") for call in cluster.batch.calls if call.startswith("delete_job"))
    assert mlflow_run(platform, created[0]).info.status == "KILLED"


def test_detach_leaves_the_job_to_clean_up_after_itself(platform: LifecyclePlatform, project: Path) -> None:
    cluster = Cluster(PodScript("running"))
    result = run(platform, cluster, project, detach=True)
    assert result.status == "RUNNING"
    ((namespace, name),) = cluster.batch.jobs
    assert (namespace, f"{name}-code") in cluster.core.config_maps
    assert cluster.batch.jobs[(namespace, name)]["spec"]["ttlSecondsAfterFinished"] > 0
    # what the TTL controller does at expiry: the Job goes, the garbage collector takes the rest
    cluster.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    cluster.assert_nothing_left()
    mlflow_client.client(platform.tracking_uri).set_terminated(result.run_id, status="KILLED")


def test_submit_failure_leaves_nothing_and_closes_the_run(platform: LifecyclePlatform, project: Path) -> None:
    cluster = Cluster(PodScript("succeeded"))
    cluster.site.namespace = "missing"
    with pytest.raises(ChimlError, match='namespaces "missing" not found'):
        run(platform, cluster, project)
    cluster.assert_nothing_left()
    runs = mlflow_client.client(platform.tracking_uri).search_runs(
        [mlflow_client.experiment_id(mlflow_client.client(platform.tracking_uri), "Default")],
        filter_string="attributes.status = 'RUNNING'",
    )
    assert all(r.data.tags.get("chiml.job", "").split("/")[0] != "missing" for r in runs)


def test_code_over_the_limit_fails_before_any_run_exists(platform: LifecyclePlatform, project: Path) -> None:
    cluster = Cluster(PodScript("succeeded"))
    (project / "weights.bin").write_bytes(os.urandom(20 * 1024))
    platform.config.training.code_limit_bytes = 8 * 1024
    started: list[str] = []
    with pytest.raises(ChimlError, match="over the 8 KiB limit"):
        run(platform, cluster, project, on_start=lambda run_id, url: started.append(run_id))
    assert started == [] and cluster.batch.calls == []


def test_dry_run_builds_valid_objects_without_contacting_anything(project: Path) -> None:
    site = ClusterSite(api=None, namespace=NAMESPACE, mlflow_uri=incluster.mlflow_uri(HELM, NAMESPACE),
                       logs=incluster.tensorboard_logs(HELM, NAMESPACE),
                       optuna=incluster.optuna_database(HELM, NAMESPACE))

    class Unreachable:  # any use of the tracking server fails the test
        config = ChimlConfig()

        @property
        def tracking_uri(self) -> str:
            raise AssertionError("a dry run must not contact MLflow")

    objects = run_on_cluster(Unreachable(), str(project / "train.py"), {}, site=site, dry_run=True, gpus=1)
    assert [o["kind"] for o in objects] == ["Job", "ConfigMap"]
    for obj in objects:
        validate(obj)


def test_cli_dry_run_prints_yaml_or_json(tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chiml.cli.main import app

    monkeypatch.setenv("CHIML_HOME", str(tmp_path / "home"))
    config = tmp_path / "chiml.yaml"
    config.write_text(yaml.safe_dump({"profile": "kubernetes", "kubernetes": {"helm_dir": str(REPO / "helm")}}))
    runner = CliRunner()
    args = ["train", str(project / "train.py"), "--gpus", "1", "--dry-run", "--config", str(config)]
    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    objects = json.loads(as_json.stdout)
    assert [o["kind"] for o in objects] == ["Job", "ConfigMap"]
    pod = objects[0]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"] == incluster.mlflow_uri(REPO / "helm", "chiml")
    as_yaml = runner.invoke(app, args)
    assert as_yaml.exit_code == 0, as_yaml.output
    assert [d["kind"] for d in yaml.safe_load_all(as_yaml.stdout)] == ["Job", "ConfigMap"]


# ----------------------------------------------------------------- --gpus on the local profile
def test_select_devices_takes_the_first_visible() -> None:
    assert select_devices(1, "2,3") == "2"
    assert select_devices(2, "2,3") == "2,3"


def test_select_devices_says_plainly_when_too_few() -> None:
    with pytest.raises(ChimlError, match="no GPU is visible"):
        select_devices(1, "")
    with pytest.raises(ChimlError, match=r"only 2 GPU\(s\) are visible"):
        select_devices(3, "0,1")


def test_local_gpus_sets_cuda_visible_devices(
    platform: LifecyclePlatform, scripts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    script = scripts / "show.py"
    script.write_text("import os\nprint('devices=' + os.environ['CUDA_VISIBLE_DEVICES'])\n")
    lines: list[str] = []
    result = run_training(platform, str(script), {}, gpus=1, echo=lambda s, line: lines.append(line), cwd=scripts)
    assert result.status == "FINISHED"
    assert "devices=5\n" in lines


def test_local_profile_refuses_cluster_only_flags(platform: LifecyclePlatform, scripts: Path) -> None:
    (scripts / "t.py").write_text("pass\n")
    with pytest.raises(ChimlError, match="--dry-run is for cluster profiles"):
        run_training(platform, str(scripts / "t.py"), {}, dry_run=True, cwd=scripts)


# ----------------------------------------------------------------- pods that really run (the fake kubelet's processes)
SCRIPT = """\
from chiml import tracking as ct
p = ct.params(epochs=1, lr=0.1)
for epoch in range(p["epochs"]):
    ct.log_metrics(step=epoch, loss=1.0 / (epoch + 1))
    print(f"epoch {epoch}", flush=True)
"""


def test_the_pod_runs_the_script_and_closes_its_own_run(platform: LifecyclePlatform, project: Path) -> None:
    (project / "train.py").write_text(SCRIPT)
    cluster = Cluster(PodScript("process"), services=service_routes(platform.tracking_uri))
    lines: list[str] = []
    with on_the_laptop() as attempts:
        result = run(platform, cluster, project, lines)
    assert attempts == []
    assert result.status == "FINISHED", "".join(lines)
    assert [line for line in lines if line.startswith("epoch")] == ["epoch 0\n", "epoch 1\n"], lines
    cluster.assert_nothing_left()
    client = mlflow_client.client(platform.tracking_uri)
    info = client.get_run(result.run_id)
    assert info.data.params["epochs"] == "2" and info.data.metrics["loss"] == 0.5
    # the pod's supervisor stored the output itself (a detached run keeps its output too)
    stdout = Path(client.download_artifacts(result.run_id, "logs/stdout.txt")).read_text()
    assert "epoch 1" in stdout
    assert not (project / "s3:").exists()


def test_a_detached_pod_closes_its_run_with_nobody_watching(platform: LifecyclePlatform, project: Path) -> None:
    (project / "train.py").write_text("import sys\nprint('bad data', file=sys.stderr)\nsys.exit(4)\n")
    cluster = Cluster(PodScript("process"), services=service_routes(platform.tracking_uri))
    result = run(platform, cluster, project, detach=True)
    assert result.status == "RUNNING"
    ((_, name),) = cluster.batch.jobs
    deadline = time.monotonic() + 60
    while not (cluster.api.read_job(NAMESPACE, name) or {}).get("status", {}).get("failed"):
        assert time.monotonic() < deadline, "the pod did not end"
        time.sleep(0.2)
    info = mlflow_run(platform, result.run_id)
    assert info.info.status == "FAILED" and info.data.tags["chiml.exit_code"] == "4"
    cluster.batch.delete_namespaced_job(name, NAMESPACE, propagation_policy="Background")
    cluster.assert_nothing_left()


def test_ctrl_c_stops_a_running_pod_and_the_run_is_killed(platform: LifecyclePlatform, project: Path) -> None:
    (project / "train.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    cluster = Cluster(PodScript("process"), services=service_routes(platform.tracking_uri))
    created: list[str] = []

    def interrupt(stream: str, line: str) -> None:
        if line.startswith("started"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_on_cluster(platform, str(project / "train.py"), {}, site=cluster.site, poll=0, echo=interrupt,
                       on_start=lambda run_id, url: created.append(run_id))
    cluster.assert_nothing_left()
    assert mlflow_run(platform, created[0]).info.status == "KILLED"


@pytest.mark.parametrize(
    ("command", "kinds"),
    [
        (["tune", "{script}", "--trials", "8", "--workers", "3", "--gpus", "1"], ["Job", "ConfigMap"]),
        (["optimize", "models:/digits@production", "--target", "auto"], ["Job", "ConfigMap"] * 3),
    ],
)
def test_cli_dry_run_of_tune_and_optimize(tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch,
                                          command: list[str], kinds: list[str]) -> None:
    from chiml.cli.main import app

    monkeypatch.setenv("CHIML_HOME", str(tmp_path / "home"))
    config = tmp_path / "chiml.yaml"
    config.write_text(yaml.safe_dump({"profile": "kubernetes", "kubernetes": {"helm_dir": str(REPO / "helm")}}))
    args = [part.format(script=project / "train.py") for part in command]
    result = CliRunner().invoke(app, [*args, "--dry-run", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    objects = json.loads(result.stdout)
    assert [o["kind"] for o in objects] == kinds
    for obj in objects:
        validate(obj)
    if command[0] == "tune":
        spec = objects[0]["spec"]
        assert (spec["completionMode"], spec["parallelism"]) == ("Indexed", 3)
        assert spec["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert "-cuda" in spec["template"]["spec"]["containers"][0]["image"]


def test_local_tune_deals_the_visible_gpus_to_its_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from chiml.errors import NotSupportedError
    from chiml.lifecycle.tune import worker_devices

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    assert worker_devices(1, 4) == ["4", "5", "6", "4"]
    assert worker_devices(2, 2) == ["4,5", "6,4"]
    assert worker_devices(0, 2) == []  # hidden
    assert worker_devices(None, 2) is None  # left as they are
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(NotSupportedError, match="no GPU is visible"):
        worker_devices(1, 2)
