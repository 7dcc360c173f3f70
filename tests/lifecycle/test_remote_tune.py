"""`chiml tune` on a cluster profile: worker pods of an Indexed Job against the fake Kubernetes API,
whose kubelet runs them as real processes, a real PostgreSQL as the in-cluster Optuna storage and
a real MLflow server.

The laptop side (this test process) must never open the database nor resolve an in-cluster
name: the pods get the storage through the fake cluster's Service routing, the laptop reads
progress from MLflow only.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
import pytest
from mlflow import MlflowClient

from chiml.errors import ChimlError
from chiml.kube import incluster
from chiml.kube.secrets import OPTUNA_PG_SECRET
from chiml.lifecycle.remote_tune import StudyFailed, run_study_on_cluster
from chiml.lifecycle.storage import open_storage
from chiml.lifecycle.study import HOST_ATTR, OUTCOME_ATTR, SESSION_ATTR, lost
from chiml.lifecycle.tune import StudyProgress
from chiml.local.postgres import ManagedPostgres
from tests.kube.fake_kube import PodScript
from tests.kube.schemas import validate

from .conftest import LifecyclePlatform
from .kube_cluster import HELM, NAMESPACE, Cluster, on_the_laptop, service_routes

pytestmark = pytest.mark.e2e

SCRIPT = """
import time
from chiml import tracking as ct
p = ct.params(x=ct.float_range(-4.0, 4.0), sleep=0.0)
time.sleep(p["sleep"])
ct.log_metrics(step=0, loss=(p["x"] - 1.0) ** 2)
"""
HEARTBEAT = (1, 8)  # seconds: quick detection of a lost trial in tests, with room for a busy machine


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "search.py").write_text(SCRIPT)
    return folder


def make_cluster(platform: LifecyclePlatform, postgres: ManagedPostgres, gpu_nodes: int = 0) -> Cluster:
    url = urlsplit(postgres.url("optuna"))
    db = incluster.optuna_database(HELM, NAMESPACE)
    database = f"{db.host}:{db.port}"
    cluster = Cluster(PodScript("process"), gpu_nodes=gpu_nodes,
                      services=service_routes(platform.tracking_uri, **{database: f"127.0.0.1:{url.port}"}))
    cluster.set_secret(OPTUNA_PG_SECRET, {"username": url.username or "", "password": postgres.password()})
    return cluster


def tune(platform: LifecyclePlatform, cluster: Cluster, project: Path, **options: Any) -> Any:
    with on_the_laptop() as attempts:
        try:
            return run_study_on_cluster(platform, str(project / "search.py"), site=cluster.site, poll=0.2,
                                        heartbeat=HEARTBEAT, cwd=project, **options)
        finally:
            assert attempts == [], f"the laptop reached in-cluster addresses: {attempts}"


def study(postgres: ManagedPostgres, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(postgres.url("optuna")))


def children(platform: LifecyclePlatform, parent: str) -> list[Any]:
    client = MlflowClient(platform.tracking_uri)
    experiment = client.get_run(parent).info.experiment_id
    return client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'")


def test_workers_are_pods_of_an_indexed_job_sharing_one_study(
    platform: LifecyclePlatform, postgres: ManagedPostgres, project: Path
) -> None:
    cluster = make_cluster(platform, postgres)
    snapshots: list[StudyProgress] = []
    # trials long enough for both workers to take part (a worker process starts in seconds)
    result = tune(platform, cluster, project, trials=4, workers=2, study_name="cluster-quad", metric="loss",
                  direction="minimize", seed=1, params={"sleep": 4.0}, progress=snapshots.append)
    assert result.n_complete == 4 and result.n_failed == 0
    cluster.assert_nothing_left()
    (job,) = cluster.batch.created
    assert (job["spec"]["completionMode"], job["spec"]["completions"]) == ("Indexed", 2)
    # the study the workers filled: four trials of this session, from two worker pods
    found = study(postgres, "cluster-quad")
    assert len(found.trials) == 4 and found.best_value == pytest.approx(result.best_value)
    assert found.best_params == result.best_params
    assert {t.user_attrs[SESSION_ATTR] for t in found.trials} == {job["metadata"]["name"]}
    assert len({t.user_attrs["chiml.worker_pid"] for t in found.trials}) == 2
    # progress came from MLflow: the best value showed up before the end
    assert any(s.best_value is not None for s in snapshots) and snapshots[-1].goal == 4
    # every trial is a closed child run; the study run holds the best trial and the worker logs
    runs = children(platform, result.parent_run_id)
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
    parent = MlflowClient(platform.tracking_uri).get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["chiml.best_trial"] == str(result.best_trial)
    logs = MlflowClient(platform.tracking_uri).list_artifacts(result.parent_run_id, "worker-logs")
    texts = [Path(MlflowClient(platform.tracking_uri).download_artifacts(result.parent_run_id, i.path)).read_text()
             for i in logs]
    assert len(logs) == 2, "\n=====\n".join(texts)
    # a second session continues the same study: four more trials
    again = tune(platform, make_cluster(platform, postgres), project, trials=2, workers=2, study_name="cluster-quad")
    assert again.parent_run_id == result.parent_run_id and again.n_complete == 6


def test_a_worker_killed_mid_trial_loses_only_that_trial(
    platform: LifecyclePlatform, postgres: ManagedPostgres, project: Path
) -> None:
    cluster = make_cluster(platform, postgres)
    killed: list[int] = []
    inspector = open_storage(postgres.url("optuna"))  # the test's own view of the database, opened beforehand

    def kill_a_busy_worker(snapshot: StudyProgress) -> None:
        if killed or not snapshot.running:
            return
        trials = optuna.load_study(study_name="cluster-crash", storage=inspector).trials
        running = [t for t in trials if t.state.name == "RUNNING"]
        for entry in list(cluster.core.job_pods.values()):
            process = entry.get("processes", {}).get("worker")
            if running and process is not None and process.pid == running[0].user_attrs["chiml.worker_pid"]:
                killed.append(running[0].number)
                cluster.batch.cluster.kubelet.kill(entry, signal.SIGKILL)  # the node lost it: no goodbye
                return

    result = tune(platform, cluster, project, trials=3, workers=2, study_name="cluster-crash", metric="loss",
                  params={"sleep": 4.0}, progress=kill_a_busy_worker)
    assert killed, "no worker was busy to kill"
    cluster.assert_nothing_left()
    trials = study(postgres, "cluster-crash").trials
    (victim,) = [t for t in trials if t.number == killed[0]]
    # found by the heartbeat of the other workers (no process id check: that says nothing across hosts)
    assert victim.state.name == "FAIL" and lost(victim) and OUTCOME_ATTR not in victim.user_attrs
    assert HOST_ATTR in victim.user_attrs
    assert sum(not lost(t) for t in trials) == 3 and result.n_complete == 3
    assert result.worker_restarts >= 1  # the Job controller replaced the dead pod
    runs = {r.data.tags["chiml.trial"]: r for r in children(platform, result.parent_run_id)}
    assert runs[str(victim.number)].info.status == "FAILED"
    assert runs[str(victim.number)].data.tags["chiml.trial_state"] == "FAIL (worker died)"
    assert all(r.info.status != "RUNNING" for r in runs.values())


def test_ctrl_c_deletes_the_job_and_leaves_no_running_run(
    platform: LifecyclePlatform, postgres: ManagedPostgres, project: Path
) -> None:
    cluster = make_cluster(platform, postgres)

    def interrupt(snapshot: StudyProgress) -> None:
        if snapshot.running:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(platform, cluster, project, trials=4, workers=2, study_name="cluster-interrupted",
             params={"sleep": 30.0}, progress=interrupt)
    cluster.assert_nothing_left()
    client = MlflowClient(platform.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("Default").experiment_id],
                              filter_string="tags.`chiml.study` = 'cluster-interrupted'")
    parents = [r for r in runs if r.data.tags.get("chiml.kind") == "study"]
    assert parents and parents[0].info.status == "KILLED"
    assert [r for r in runs if r.info.status == "RUNNING"] == []
    # the stopped workers failed their trials themselves (a resume replaces them)
    assert all(t.state.name != "RUNNING" for t in study(postgres, "cluster-interrupted").trials)


def test_a_workers_configuration_error_fails_the_job_at_once(
    platform: LifecyclePlatform, postgres: ManagedPostgres, project: Path
) -> None:
    # a study of that name exists in the database, as a maximize study, unknown to MLflow
    optuna.create_study(study_name="cluster-conflict", storage=open_storage(postgres.url("optuna")),
                        direction="maximize")
    cluster = make_cluster(platform, postgres)
    with pytest.raises(StudyFailed, match="cannot resume it to minimize") as err:
        tune(platform, cluster, project, trials=2, workers=2, study_name="cluster-conflict", direction="minimize")
    assert "\n" not in err.value.message
    cluster.assert_nothing_left()
    # podFailurePolicy: the first worker's exit status 2 failed the Job, no retries
    assert cluster.batch.created[0]["spec"]["podFailurePolicy"]["rules"][0]["action"] == "FailJob"


def test_gpu_workers_without_a_gpu_node_fail_clearly(
    platform: LifecyclePlatform, postgres: ManagedPostgres, project: Path
) -> None:
    cluster = make_cluster(platform, postgres)
    with pytest.raises(StudyFailed, match="no node can run the pod"):
        tune(platform, cluster, project, trials=2, workers=2, study_name="cluster-gpu", gpus=1)
    cluster.assert_nothing_left()
    (job,) = cluster.batch.created
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_dry_run_prints_the_indexed_job_without_credentials(project: Path, platform: LifecyclePlatform) -> None:
    from chiml.lifecycle.cluster import ClusterSite

    site = ClusterSite(api=None, namespace=NAMESPACE, mlflow_uri=incluster.mlflow_uri(HELM, NAMESPACE),
                       logs=incluster.tensorboard_logs(HELM, NAMESPACE),
                       optuna=incluster.optuna_database(HELM, NAMESPACE))
    objects = run_study_on_cluster(platform, str(project / "search.py"), trials=8, workers=3, site=site,
                                   dry_run=True, cwd=project)
    assert [o["kind"] for o in objects] == ["Job", "ConfigMap"]
    for obj in objects:
        validate(obj)
    container = objects[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    db = incluster.optuna_database(HELM, NAMESPACE)
    assert env["CHIML_OPTUNA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": db.password.secret,
                                                                         "key": db.password.key}
    assert env["CHIML_OPTUNA_STORAGE"]["value"] == db.url("$(CHIML_OPTUNA_USER)", "$(CHIML_OPTUNA_PASSWORD)")
    spec = json.loads(container["args"][0])
    assert spec["storage"] == "" and spec["goal"] == 8 and spec["heartbeat"]


def test_no_trial_completed_is_one_clear_error(
    platform: LifecyclePlatform, postgres: ManagedPostgres, project: Path
) -> None:
    (project / "search.py").write_text("raise RuntimeError('no data here')\n")
    cluster = make_cluster(platform, postgres)
    with pytest.raises(ChimlError, match="no trial completed"):
        tune(platform, cluster, project, trials=2, workers=1, study_name="cluster-broken")
    cluster.assert_nothing_left()
    trials = study(postgres, "cluster-broken").trials
    assert trials and all(t.state.name == "FAIL" and not lost(t) for t in trials)
