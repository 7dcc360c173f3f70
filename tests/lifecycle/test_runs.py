"""`chiml runs` and `train --detach`: on the local profile (runs are processes) and on a cluster profile
(runs are Jobs, against the fake Kubernetes API whose kubelet runs pods as processes)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from chiml.errors import InvalidInputError
from chiml.lifecycle import mlflow_client
from chiml.lifecycle import runs as runs_module
from chiml.lifecycle.remote import run_on_cluster
from chiml.lifecycle.runs import Runs
from chiml.lifecycle.train import run_training
from tests.conftest import write_local_config
from tests.kube.fake_kube import PodScript

from .conftest import LifecyclePlatform
from .kube_cluster import NAMESPACE, Cluster, service_routes

SLOW = "import time\nfor i in range(600):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.2)\n"
QUICK = "print('hello from the run', flush=True)\nprint('bye', flush=True)\n"


def status(platform: LifecyclePlatform, run_id: str) -> str:
    return str(mlflow_client.client(platform.tracking_uri).get_run(run_id).info.status)


def started_detached(platform: LifecyclePlatform, scripts: Path) -> tuple[str, list[psutil.Process]]:
    """A detached run of SLOW, once it prints: its id, its supervisor and the processes under it."""
    (scripts / "slow.py").write_text(SLOW)
    result = run_training(platform, str(scripts / "slow.py"), {}, detach=True, cwd=scripts)
    wait_for(lambda: "tick 1" in Path(platform.home, "runs", f"{result.run_id}.log").read_text())
    supervisor = psutil.Process(Runs(platform).get(result.run_id).pid or 0)
    return result.run_id, [supervisor, *supervisor.children(recursive=True)]


def wait_for(check: Any, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


# ----------------------------------------------------------------- local: runs are processes
def test_detached_local_run_is_followed_to_its_end(platform: LifecyclePlatform, scripts: Path) -> None:
    (scripts / "quick.py").write_text(QUICK)
    result = run_training(platform, str(scripts / "quick.py"), {}, detach=True, cwd=scripts)
    assert result.status == "RUNNING"
    lines: list[str] = []
    Runs(platform).logs(result.run_id, follow=True, echo=lines.append)
    assert "hello from the run\n" in lines and "bye\n" in lines
    wait_for(lambda: status(platform, result.run_id) != "RUNNING")
    assert status(platform, result.run_id) == "FINISHED"
    info = Runs(platform).get(result.run_id)
    assert info.kind == "train" and info.where.startswith("local:") and info.pid is not None
    # the output is stored with the run too
    stored: list[str] = []
    Runs(platform).logs(result.run_id, echo=stored.append)
    assert any("hello from the run" in chunk for chunk in stored)


def test_cancel_stops_a_detached_run_and_everything_it_started(platform: LifecyclePlatform, scripts: Path) -> None:
    run_id, family = started_detached(platform, scripts)
    assert len(family) >= 2
    runs = Runs(platform)
    cancelled = runs.cancel(run_id)
    assert cancelled.status == "KILLED"
    _, alive = psutil.wait_procs(family, timeout=30)
    assert alive == []
    with pytest.raises(InvalidInputError, match="KILLED: nothing to cancel"):
        runs.cancel(run_id)


def test_a_vanished_process_is_reconciled_when_listed(
    platform: LifecyclePlatform, scripts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, family = started_detached(platform, scripts)
    for process in family:  # kill -9: nothing closes the run
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(family, timeout=30)
    monkeypatch.setattr(runs_module, "SETTLE_S", 0.0)
    (listed,) = [r for r in Runs(platform).list(limit=50) if r.run_id == run_id]
    assert listed.status == "FAILED" and "process ended without closing the run" in (listed.error or "")


def test_cli_detach_list_logs_and_cancel(platform: LifecyclePlatform, scripts: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from chiml.cli.main import app

    (scripts / "quick.py").write_text(QUICK)
    config = write_local_config(tmp_path)
    monkeypatch.setenv("CHIML_TRACKING_URI", platform.tracking_uri)
    monkeypatch.delenv("CHIML_HOME", raising=False)
    monkeypatch.chdir(scripts)
    cli = CliRunner()
    started = cli.invoke(app, ["train", "quick.py", "--detach", "--json", "--config", str(config)])
    assert started.exit_code == 0, started.output
    run_id = json.loads(started.stdout)["run_id"]
    followed = cli.invoke(app, ["runs", "logs", run_id, "-f", "--config", str(config)])
    assert followed.exit_code == 0 and "hello from the run" in followed.stdout
    wait_for(lambda: status(platform, run_id) != "RUNNING")
    listed = cli.invoke(app, ["runs", "list", "--json", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert {"run_id": run_id, "status": "FINISHED"}.items() <= next(
        r for r in json.loads(listed.stdout) if r["run_id"] == run_id).items()
    refused = cli.invoke(app, ["runs", "cancel", run_id, "--config", str(config)])
    assert refused.exit_code != 0 and "nothing to cancel" in str(refused.exception or refused.output)


# ----------------------------------------------------------------- cluster: runs are Jobs
def test_detached_job_is_followed_and_cancelled(platform: LifecyclePlatform, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(SLOW)
    cluster = Cluster(PodScript("process"), services=service_routes(platform.tracking_uri))
    result = run_on_cluster(platform, str(project / "train.py"), {}, site=cluster.site, detach=True, poll=0)
    runs = Runs(platform, site=cluster.site)
    lines: list[str] = []

    def stop_after_a_few(line: str) -> None:
        lines.append(line)
        if len(lines) == 3:
            runs.cancel(result.run_id)

    runs.logs(result.run_id, follow=True, echo=stop_after_a_few)
    assert lines[:3] == ["tick 0\n", "tick 1\n", "tick 2\n"]
    cluster.assert_nothing_left()
    info = runs.get(result.run_id)
    assert info.status == "KILLED" and info.job and info.job.startswith(f"{NAMESPACE}/train-")


def test_a_job_whose_pod_died_unclosed_is_reconciled(
    platform: LifecyclePlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('x')\n")
    cluster = Cluster(PodScript("oom", logs="allocating\n"))  # the whole container went: nobody closed the run
    result = run_on_cluster(platform, str(project / "train.py"), {}, site=cluster.site, detach=True, poll=0)
    monkeypatch.setattr(runs_module, "SETTLE_S", 0.0)
    runs = Runs(platform, site=cluster.site)
    wait_for(lambda: runs.get(result.run_id).status != "RUNNING", timeout=30)
    info = runs.get(result.run_id)
    assert info.status == "FAILED" and "OOMKilled" in (info.error or "")
    # the TTL controller's part: the finished Job goes, with its pod and ConfigMap
    ((namespace, name),) = cluster.batch.jobs
    cluster.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    cluster.assert_nothing_left()


def test_cancel_of_a_run_on_another_machine_is_refused(platform: LifecyclePlatform) -> None:
    client = mlflow_client.client(platform.tracking_uri)
    run = client.create_run(mlflow_client.experiment_id(client, "Default"),
                            tags={"chiml.kind": "train", "chiml.host": "elsewhere", "chiml.pid": str(os.getpid())})
    from chiml.errors import NotSupportedError

    with pytest.raises(NotSupportedError, match="runs on elsewhere"):
        Runs(platform).cancel(run.info.run_id)
    client.set_terminated(run.info.run_id, status="KILLED")


def test_a_studys_logs_are_every_workers_prefixed(platform: LifecyclePlatform) -> None:
    from chiml.kube import jobs
    from tests.kube.test_jobs import make_job

    cluster = Cluster(PodScript("succeeded", logs="trial 0 COMPLETE\n"))
    plan = make_job(name="tune-quad-abc123", kind="tune", workers=2, code=None, container="worker")
    cluster.batch.create_namespaced_job(NAMESPACE, jobs.job_object(plan))
    client = mlflow_client.client(platform.tracking_uri)
    run = client.create_run(mlflow_client.experiment_id(client, "Default"),
                            tags={"chiml.kind": "study", "chiml.job": f"{NAMESPACE}/{plan.name}"})
    for _ in range(4):  # the kubelet starts the pods
        cluster.api.job_pods(NAMESPACE, plan.name)
    lines: list[str] = []
    Runs(platform, site=cluster.site).logs(run.info.run_id, follow=True, echo=lines.append)
    assert sorted(lines) == [f"[{plan.name}-0-00001] trial 0 COMPLETE\n", f"[{plan.name}-1-00002] trial 0 COMPLETE\n"]
    client.set_terminated(run.info.run_id, status="FINISHED")
