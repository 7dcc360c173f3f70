"""kill -9 during use: every supervised service, supervisord itself, and everything at once.

Nothing may be lost (runs, metrics, studies), nothing may be left running unsupervised, and
the platform must come back by itself (a service) or with one `chiml up` (supervisord, a
power cut). How long that took is recorded as a figure, not asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from chiml.local.supervisor import Supervisor
from tests.conftest import write_local_config
from tests.platform.test_local_e2e import chiml
from tests.reliability.conftest import remove_postgres_data

pytestmark = pytest.mark.e2e

SERVICES = ("mlflow", "optuna_dashboard", "tensorboard")
TRIALS = 6


@pytest.fixture
def workdir(tmp_path: Path):
    write_local_config(tmp_path)
    yield tmp_path
    chiml("down", cwd=tmp_path, check=False)
    assert Supervisor(tmp_path / ".chiml").orphans() == [], "a process outlived `chiml down`"


def status(cwd: Path) -> dict[str, dict[str, Any]]:
    result = chiml("status", "--json", cwd=cwd, check=False)
    return {s["name"]: s for s in json.loads(result.stdout)["services"]}


def mlflow_uri(cwd: Path) -> str:
    config = yaml.safe_load((cwd / "chiml.yaml").read_text())
    return f"http://127.0.0.1:{config['local']['ports']['mlflow']}"


def register(client: Any, name: str, run_id: str) -> str:
    """A new version of registered model ``name`` from a model logged in run ``run_id``."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "MLmodel").write_text("flavors: {}\n", encoding="utf-8")
        client.log_artifacts(run_id, folder, artifact_path="model")
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    return str(client.create_model_version(name, source, run_id=run_id).version)


def versions(client: Any, name: str) -> list[tuple[str, str]]:
    return sorted((v.version, v.run_id) for v in client.search_model_versions(f"name = '{name}'"))


def wait_back(cwd: Path, name: str, old_pid: int, timeout: float = 90) -> float:
    """Seconds until `name` is healthy again under a new PID, its old process tree gone."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        entry = status(cwd).get(name, {})
        if entry.get("healthy") and entry.get("pid") not in (None, old_pid):
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{name} did not come back within {timeout:.0f}s: {status(cwd).get(name)}")


def program_processes(home: Path, name: str) -> list[psutil.Process]:
    sup = Supervisor(home)
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("CHIML_SUPERVISOR") == sup.ident and env.get("CHIML_PROGRAM") == name:
            found.append(proc)
    return found


@pytest.mark.parametrize("name", SERVICES)
def test_killed_service_comes_back_supervised(workdir: Path, name: str, figures: dict[str, Any]):
    chiml("up", cwd=workdir)
    home = workdir / ".chiml"
    old = status(workdir)[name]["pid"]
    tree = [psutil.Process(old), *psutil.Process(old).children(recursive=True)]
    os.kill(old, signal.SIGKILL)
    figures[f"kill -9 {name}: healthy again after (s)"] = round(wait_back(workdir, name, old), 1)
    # The whole old process tree is gone (MLflow's uvicorn child used to survive and keep the
    # port, so the supervised restarts failed while an orphan answered the health check).
    time.sleep(0.5)
    survivors = [p.pid for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == []
    new = status(workdir)[name]["pid"]
    assert all(p.pid == new or psutil.Process(new) in p.parents() for p in program_processes(home, name))


def test_killed_postgresql_comes_back_with_its_data(tmp_path: Path, figures: dict[str, Any]):
    """The managed PostgreSQL (MLflow's and Optuna's database) killed -9 while MLflow uses it."""
    from mlflow.tracking import MlflowClient

    write_local_config(tmp_path, database="postgresql")
    try:
        chiml("up", cwd=tmp_path)
        client = MlflowClient(mlflow_uri(tmp_path))
        run = client.create_run(client.create_experiment("on-postgresql"))
        client.log_metric(run.info.run_id, "acc", 0.5, step=0)
        old = status(tmp_path)["postgresql"]["pid"]
        os.kill(old, signal.SIGKILL)
        figures["kill -9 postgresql: healthy again after (s)"] = round(wait_back(tmp_path, "postgresql", old), 1)
        client.log_metric(run.info.run_id, "acc", 0.6, step=1)  # MLflow reconnects by itself
        history = client.get_metric_history(run.info.run_id, "acc")
        assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (1, 0.6)]
    finally:
        chiml("down", cwd=tmp_path, check=False)
        remove_postgres_data(tmp_path / ".chiml")
    assert Supervisor(tmp_path / ".chiml").orphans() == []


def test_killed_supervisord_then_up_loses_nothing(workdir: Path, figures: dict[str, Any]):
    from mlflow.tracking import MlflowClient

    chiml("up", cwd=workdir)
    home = workdir / ".chiml"
    client = MlflowClient(mlflow_uri(workdir))
    run = client.create_run(client.create_experiment("before-the-crash"))
    client.log_metric(run.info.run_id, "acc", 0.91)
    assert register(client, "survivor", run.info.run_id) == "1"
    before = {name: entry["pid"] for name, entry in status(workdir).items()}

    os.kill(int((home / "supervisor" / "supervisord.pid").read_text()), signal.SIGKILL)
    time.sleep(0.5)
    assert Supervisor(home).orphans(), "the services should outlive a killed supervisord"
    assert chiml("status", cwd=workdir, check=False).returncode == 1
    # still in use without its supervisor: the tracking server keeps answering
    assert register(client, "survivor", run.info.run_id) == "2"

    started = time.monotonic()
    chiml("up", cwd=workdir)
    figures["kill -9 supervisord: `chiml up` back to healthy (s)"] = round(time.monotonic() - started, 1)
    after = {name: entry["pid"] for name, entry in status(workdir).items()}
    assert set(after.values()).isdisjoint(before.values())
    assert not any(psutil.pid_exists(pid) for pid in before.values())
    client = MlflowClient(mlflow_uri(workdir))
    assert client.get_run(run.info.run_id).data.metrics["acc"] == 0.91
    assert versions(client, "survivor") == [("1", run.info.run_id), ("2", run.info.run_id)]


def test_power_cut_then_up_keeps_everything(workdir: Path, figures: dict[str, Any]):
    """Every process of the platform killed at once, as by a power cut; then `up`."""
    import optuna
    from mlflow.tracking import MlflowClient

    chiml("up", cwd=workdir)
    home = workdir / ".chiml"
    from chiml import Platform

    platform = Platform.connect(config=workdir / "chiml.yaml")
    storage = platform.profile.optuna_storage()
    from chiml.lifecycle.storage import open_storage

    study = optuna.create_study(study_name="survives", storage=open_storage(storage))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    client = MlflowClient(mlflow_uri(workdir))
    run = client.create_run(client.create_experiment("power-cut"))
    for step in range(20):
        client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
    register(client, "power-cut", run.info.run_id)

    sup = Supervisor(home)
    victims = [psutil.Process(sup.pid() or 0), *sup.orphans()]
    for proc in victims:
        proc.kill()
    psutil.wait_procs(victims, timeout=10)

    started = time.monotonic()
    chiml("up", cwd=workdir)
    figures["power cut: `chiml up` back to healthy (s)"] = round(time.monotonic() - started, 1)
    history = MlflowClient(mlflow_uri(workdir)).get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(20))
    reloaded = optuna.load_study(study_name="survives", storage=open_storage(platform.profile.optuna_storage()))
    assert len([t for t in reloaded.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 3
    assert versions(MlflowClient(mlflow_uri(workdir)), "power-cut") == [("1", run.info.run_id)]
    json.loads((home / "state.json").read_text())  # still whole


TRAINING = textwrap.dedent(
    """
    import time
    from chiml import tracking as ct

    p = ct.params(steps=24)
    for step in range(p["steps"]):
        ct.log_metrics(step=step, loss=1.0 / (step + 1))
        time.sleep(0.4)
    print("done")
    """
)


def test_training_run_survives_mlflow_crash(workdir: Path, figures: dict[str, Any]):
    """A run logging metrics while the tracking server is killed loses no metric."""
    from mlflow.tracking import MlflowClient

    chiml("up", cwd=workdir)
    script = workdir / "train_slow.py"
    script.write_text(TRAINING, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CHIML_HOME"}
    train = subprocess.Popen(
        [sys.executable, "-m", "chiml.cli.main", "train", str(script), "--experiment", "crash", "--json"],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = MlflowClient(mlflow_uri(workdir))
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and train.poll() is None:  # kill it while the run is logging
            experiment = client.get_experiment_by_name("crash")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            if runs and runs[0].data.metrics:
                break
            time.sleep(0.2)
        old = status(workdir)["mlflow"]["pid"]
        os.kill(old, signal.SIGKILL)
        figures["train: kill -9 mlflow mid-run, healthy again after (s)"] = round(wait_back(workdir, "mlflow", old), 1)
        out, err = train.communicate(timeout=300)
    finally:
        if train.poll() is None:
            train.kill()
            train.wait()
    assert train.returncode == 0, out + err
    runs = client.search_runs([client.get_experiment_by_name("crash").experiment_id])
    assert len(runs) == 1, "the run was duplicated or lost"
    assert runs[0].info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "loss"))
    assert steps == list(range(24))
    figures["training run across an MLflow kill -9: metrics kept"] = f"{len(steps)}/24"


SLOW_TRIAL = textwrap.dedent(
    """
    import time
    from chiml.lifecycle import tracking as ct

    p = ct.params(x=ct.float_range(-2.0, 2.0), steps=4)
    for step in range(p["steps"]):
        ct.log_metrics(step=step, loss=(p["x"] - 0.5) ** 2 + 1.0 / (step + 1))
        time.sleep(0.5)
    """
)


def _finished(study: Any) -> list[Any]:
    import optuna

    return [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def test_tuning_study_with_two_workers_survives_killed_mlflow_and_supervisord(workdir: Path, figures: dict[str, Any]):
    """`chiml tune` with 2 workers while the tracking server, then supervisord, are killed: the study
    ends with the asked number of trials, each one MLflow child run, none lost or twice."""
    import optuna
    from mlflow.tracking import MlflowClient

    from chiml import Platform
    from chiml.lifecycle.storage import open_storage

    chiml("up", cwd=workdir)
    home = workdir / ".chiml"
    script = workdir / "slow_trial.py"
    script.write_text(SLOW_TRIAL, encoding="utf-8")
    storage = open_storage(Platform.connect(config=workdir / "chiml.yaml").profile.optuna_storage())
    env = {k: v for k, v in os.environ.items() if k != "CHIML_HOME"}
    tune = subprocess.Popen(
        [sys.executable, "-m", "chiml.cli.main", "tune", str(script), "--trials", str(TRIALS), "--workers", "2",
         "--study", "crash", "--metric", "loss", "--direction", "minimize", "--pruner", "none", "--json"],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and tune.poll() is None:  # a trial has finished: the study is under way
            try:
                if _finished(optuna.load_study(study_name="crash", storage=storage)):
                    break
            except KeyError:
                pass
            time.sleep(0.5)
        old = status(workdir)["mlflow"]["pid"]
        os.kill(old, signal.SIGKILL)
        figures["tune: kill -9 mlflow mid-study, healthy again after (s)"] = round(wait_back(workdir, "mlflow", old), 1)
        os.kill(int((home / "supervisor" / "supervisord.pid").read_text()), signal.SIGKILL)
        out, err = tune.communicate(timeout=600)
    finally:
        if tune.poll() is None:
            tune.kill()
            tune.wait()
    assert tune.returncode == 0, out + err
    started = time.monotonic()
    chiml("up", cwd=workdir)  # supervisord back, adopting nothing twice
    figures["tune: `chiml up` after supervisord's kill -9 (s)"] = round(time.monotonic() - started, 1)

    study = optuna.load_study(study_name="crash", storage=storage)
    finished = _finished(study)
    assert len(finished) == TRIALS and len(study.trials) == TRIALS, [t.state for t in study.trials]
    result = json.loads(out)
    client = MlflowClient(mlflow_uri(workdir))
    experiment = client.get_run(result["parent_run_id"]).info.experiment_id
    children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{result['parent_run_id']}'")
    assert sorted(r.info.run_id for r in children) == sorted(t.user_attrs["mlflow_run_id"] for t in study.trials)
    assert {r.info.status for r in children} == {"FINISHED"}
    figures["tune across kill -9 of mlflow and supervisord: trials finished / child runs"] = (
        f"{len(finished)}/{TRIALS}, {len(children)}")
