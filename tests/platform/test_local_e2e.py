"""The local profile for real: up → smoke → down → up, faults, and the supervisor's program API.

Each test runs its own platform on a temp CHIML_HOME and free ports (never the user's).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.conftest import free_port, write_local_config

pytestmark = pytest.mark.e2e


def chiml(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHIML_HOME"}
    result = subprocess.run(
        [sys.executable, "-m", "chiml.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"chiml {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def processes_under(home: Path) -> list[psutil.Process]:
    """Every live process whose command line mentions this CHIML_HOME (services, supervisord)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(
                str(home) in part for part in proc.info["cmdline"] or []
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def service_pids(cwd: Path) -> dict[str, int]:
    import json

    data = json.loads(chiml("status", "--json", cwd=cwd).stdout)
    return {s["name"]: s["pid"] for s in data["services"]}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_local_config(tmp_path)
    yield tmp_path
    chiml("down", cwd=tmp_path, check=False)


def test_up_smoke_down_up_keeps_runs(workdir: Path):
    home = workdir / ".chiml"
    out = chiml("up", cwd=workdir).stdout
    for name in ("mlflow", "optuna_dashboard", "tensorboard"):
        assert name in out
    assert "http://127.0.0.1:" in out

    smoke = chiml("smoke", cwd=workdir, check=False)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert " passed" in smoke.stdout

    # Something to find again after a restart.
    from mlflow.tracking import MlflowClient

    config = yaml.safe_load((workdir / "chiml.yaml").read_text())
    uri = f"http://127.0.0.1:{config['local']['ports']['mlflow']}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("persisted"))
    client.log_metric(run.info.run_id, "acc", 0.97)

    # A second up starts nothing new.
    before = service_pids(workdir)
    chiml("up", cwd=workdir)
    assert service_pids(workdir) == before

    chiml("down", cwd=workdir)
    assert processes_under(home) == []
    assert chiml("status", cwd=workdir, check=False).returncode == 1

    # A stale pid file (a killed machine) must not fool the next up.
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    (home / "supervisor" / "supervisord.pid").write_text(str(dead.pid))
    chiml("up", cwd=workdir)
    assert MlflowClient(uri).get_run(run.info.run_id).data.metrics["acc"] == 0.97
    chiml("down", cwd=workdir)
    assert processes_under(home) == []


def test_crashed_service_is_restarted_and_programs_can_be_added(workdir: Path):
    from chiml import Platform

    chiml("up", cwd=workdir)
    platform = Platform.connect(config=workdir / "chiml.yaml")
    sup = platform.profile.supervisor

    # kill -9 a service: the supervisor brings it back.
    old = service_pids(workdir)["tensorboard"]
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = {s.name: s for s in platform.status()}["tensorboard"]
        if status.healthy and status.pid != old:
            break
        time.sleep(0.5)
    assert status.healthy and status.pid != old

    # Endpoint-style programs: add, restart and remove while the platform runs.
    from chiml.local.supervisor import Program

    port = free_port()
    program = Program(
        name="endpoint-probe-0",
        command=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        directory=workdir,
    )
    sup.add_program(program)
    _wait_http(f"http://127.0.0.1:{port}/")
    first = sup.program_info("endpoint-probe-0")["pid"]
    sup.restart_program("endpoint-probe-0")
    _wait_http(f"http://127.0.0.1:{port}/")
    assert sup.program_info("endpoint-probe-0")["pid"] != first

    # Program files persist: after down/up the program comes back by itself.
    chiml("down", cwd=workdir)
    chiml("up", cwd=workdir)
    _wait_http(f"http://127.0.0.1:{port}/")
    sup.remove_program("endpoint-probe-0")
    assert sup.program_info("endpoint-probe-0") is None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def test_port_already_taken_is_a_clear_error(workdir: Path):
    port = yaml.safe_load((workdir / "chiml.yaml").read_text())["local"]["ports"]["mlflow"]
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        result = chiml("up", cwd=workdir, check=False)
    assert result.returncode == 1
    assert f"port {port} for MLflow tracking + registry is already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert processes_under(workdir / ".chiml") == []


def test_service_failing_its_health_check_leaves_nothing(workdir: Path):
    home = workdir / ".chiml"
    db = home / "data" / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database" * 100)
    result = chiml("up", cwd=workdir, check=False)
    assert result.returncode == 1
    assert "MLflow tracking + registry failed its health check" in result.stderr
    assert "mlflow.log" in result.stderr
    assert "Traceback" not in result.stderr
    assert processes_under(home) == []


def test_corrupt_state_file_is_a_clear_error(workdir: Path):
    home = workdir / ".chiml"
    home.mkdir()
    (home / "state.json").write_text("{ not json")
    result = chiml("up", cwd=workdir, check=False)
    assert result.returncode == 1
    assert "state file" in result.stderr and "corrupt" in result.stderr
    assert "Traceback" not in result.stderr
    assert processes_under(home) == []


def test_missing_postgres_binaries_is_a_clear_error(tmp_path: Path):
    write_local_config(tmp_path, database="postgresql", postgresql={"bin_dir": str(tmp_path / "nowhere")})
    result = chiml("up", cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "holds no initdb/postgres binaries" in result.stderr
    assert processes_under(tmp_path / ".chiml") == []


def test_postgresql_backend_keeps_runs_and_studies(tmp_path: Path):
    import optuna
    from mlflow.tracking import MlflowClient

    from chiml import Platform
    from chiml.lifecycle.storage import open_storage as open_optuna_storage

    write_local_config(tmp_path, database="postgresql")
    try:
        chiml("up", cwd=tmp_path)
        platform = Platform.connect(config=tmp_path / "chiml.yaml")
        assert platform.optuna_storage.startswith("postgresql+psycopg2://")
        assert "postgresql" in {s.name for s in platform.status() if s.healthy}
        client = MlflowClient(platform.tracking_uri)
        run = client.create_run(client.create_experiment("on-postgres"))
        client.log_param(run.info.run_id, "db", "postgresql")
        study = optuna.create_study(study_name="pg", storage=open_optuna_storage(platform.optuna_storage))
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)

        smoke = chiml("smoke", cwd=tmp_path, check=False)
        assert smoke.returncode == 0, smoke.stdout[-2000:]

        chiml("down", cwd=tmp_path)
        assert processes_under(tmp_path / ".chiml") == []
        chiml("up", cwd=tmp_path)
        assert MlflowClient(platform.tracking_uri).get_run(run.info.run_id).data.params["db"] == "postgresql"
        again = optuna.load_study(study_name="pg", storage=open_optuna_storage(platform.optuna_storage))
        assert len(again.trials) == 3
    finally:
        chiml("down", cwd=tmp_path, check=False)
    assert processes_under(tmp_path / ".chiml") == []
