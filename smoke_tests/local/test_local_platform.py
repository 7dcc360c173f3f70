"""Smoke checks of a running local platform."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest


def test_every_service_is_healthy(statuses):
    assert statuses, "the platform reports no services"
    down = {name: s.detail for name, s in statuses.items() if not s.healthy}
    assert not down, f"services down: {down}"


def test_processes_alive(host, statuses):
    for name, status in statuses.items():
        assert status.pid, f"{name} has no pid"
        proc = host.process.get(pid=status.pid)
        assert proc.pid == status.pid


def test_supervisord_alive(host, platform):
    pid = platform.profile.supervisor.pid()
    assert pid is not None
    assert "supervisord" in host.process.get(pid=pid).args


def _listening_ports_of(host, pid: int) -> list[str]:
    out = host.check_output(f"ss -Htlnp | grep 'pid={pid},' || true")
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def test_ports_listen_on_loopback_only(host, platform, statuses):
    for name, status in statuses.items():
        port = int(status.url.rsplit(":", 1)[1])
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening, f"{name} not listening on {port}"
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, f"{name} listens on all interfaces"
    # Every socket of every supervised process (endpoints included) is loopback-only.
    for name, info in platform.profile.supervisor.all_info().items():
        if not info.get("pid"):
            continue
        pids = [info["pid"], *host.check_output(f"pgrep -P {info['pid']} || true").split()]
        for pid in pids:
            for address in _listening_ports_of(host, int(pid)):
                assert address.startswith(("127.0.0.1:", "[::1]:")), f"{name} (pid {pid}) listens on {address}"


@pytest.mark.parametrize(
    ("service", "path", "needle"),
    [
        ("mlflow", "/health", "OK"),
        ("optuna_dashboard", "/api/meta", ""),
        ("tensorboard", "/data/logdir", "logdir"),
        ("jupyterlab", "/api", "version"),
    ],
)
def test_http_health(statuses, service, path, needle):
    if service not in statuses:
        pytest.skip(f"{service} is not configured")
    response = httpx.get(statuses[service].url + path, timeout=10)
    assert response.status_code == 200
    assert needle in response.text


def test_jupyterlab_requires_its_token(statuses, platform):
    if "jupyterlab" not in statuses:
        pytest.skip("jupyterlab is not configured (or not installed: make frameworks)")
    url = statuses["jupyterlab"].url
    assert httpx.get(f"{url}/api/contents", timeout=10).status_code == 403
    token = (platform.home / "secrets" / "jupyterlab-token").read_text().strip()
    assert httpx.get(f"{url}/api/contents", headers={"Authorization": f"token {token}"}, timeout=10).status_code == 200


def test_mlflow_logs_and_reads_back_a_run(platform):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=platform.tracking_uri)
    experiment = f"smoke-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(experiment)
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "alpha", "0.5")
    client.log_metric(run.info.run_id, "loss", 0.25, step=1)
    client.log_text(run.info.run_id, "hello from smoke", "notes/hello.txt")
    client.set_terminated(run.info.run_id)
    back = client.get_run(run.info.run_id)
    assert back.data.params["alpha"] == "0.5"
    assert back.data.metrics["loss"] == 0.25
    # The artifact went through the server's proxy, not a path the client must see.
    assert back.info.artifact_uri.startswith("mlflow-artifacts:")
    local = client.download_artifacts(run.info.run_id, "notes/hello.txt")
    with open(local) as handle:
        assert handle.read() == "hello from smoke"
    client.delete_experiment(experiment_id)


def test_optuna_storage_accepts_a_trial(platform):
    import optuna

    from chiml.lifecycle.storage import open_storage

    storage = open_storage(platform.optuna_storage)
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    study.optimize(lambda t: (t.suggest_float("x", -1, 1)) ** 2, n_trials=2)
    again = optuna.load_study(study_name=name, storage=open_storage(platform.optuna_storage))
    assert len(again.trials) == 2
    assert again.best_value == min(t.value for t in again.trials)
    # The dashboard reads the same storage: the study shows there without a restart.
    statuses = {s.name: s for s in platform.status()}
    if "optuna_dashboard" in statuses:
        deadline = time.monotonic() + 20
        while True:
            listing = httpx.get(statuses["optuna_dashboard"].url + "/api/studies", timeout=10).json()
            names = [summary["study_name"] for summary in listing["study_summaries"]]
            if name in names or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert name in names
    optuna.delete_study(study_name=name, storage=storage)
