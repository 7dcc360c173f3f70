"""Endpoint state under concurrency: two CLIs and a notebook deploying, scaling, updating and
deleting at once lose no update and never hand out a port twice."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chiml.config import load_config
from chiml.serving.local import STATE_KEY, LocalEndpoints, _replicas
from tests.conftest import write_local_config
from tests.serving.conftest import Digits, save_digits_model

ALLOCATORS = 4
ALLOCATIONS = 12


def _allocate_many(config: str, writer: int) -> None:
    from chiml.profiles.local import LocalProfile

    backend = LocalEndpoints(LocalProfile(load_config(config)))
    for i in range(ALLOCATIONS):
        with backend.state.edit() as doc:
            ports = backend._allocate(doc, 2)
            doc.setdefault(STATE_KEY, {})[f"w{writer}-{i}"] = {"port": ports[0], "replicas": [
                {"id": 0, "port": ports[1], "model_dir": "m", "runtime": "mlflow", "workers": 1}]}


def test_parallel_port_allocation_never_hands_out_a_port_twice(tmp_path: Path, monkeypatch, figures: dict) -> None:
    monkeypatch.delenv("CHIML_HOME", raising=False)
    config = write_local_config(tmp_path, endpoint_ports="30000-30199")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_allocate_many, args=(str(config), w)) for w in range(ALLOCATORS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    from chiml.state import StateStore

    doc = StateStore(tmp_path / ".chiml").load()[STATE_KEY]
    ports = [r["port"] for r in doc.values()] + [p["port"] for r in doc.values() for p in r["replicas"]]
    assert len(doc) == ALLOCATORS * ALLOCATIONS  # no lost update
    assert len(ports) == len(set(ports)) == 2 * ALLOCATORS * ALLOCATIONS  # no port twice
    figures["parallel port allocations (4 processes), duplicates"] = f"{len(ports)}, 0"


@pytest.fixture
def platform_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Digits]]:
    from chiml.profiles.local import LocalProfile

    monkeypatch.delenv("CHIML_HOME", raising=False)
    config = write_local_config(tmp_path)
    profile = LocalProfile(load_config(config))
    profile.supervisor.write_config()
    profile.supervisor.start()
    try:
        yield config, save_digits_model(tmp_path)
    finally:
        profile.supervisor.shutdown()


def _cli(config: Path, *commands: list[str]) -> subprocess.Popen[str]:
    """One shell running several chiml commands in turn (stops at the first failure)."""
    env = {k: v for k, v in os.environ.items() if k != "CHIML_HOME"}
    chiml = f"{sys.executable} -m chiml.cli.main"
    script = " && ".join(f"{chiml} {' '.join(command)} --config {config}" for command in commands)
    return subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)


def test_two_clis_and_a_notebook_at_once(platform_home: tuple[Path, Digits], figures: dict) -> None:
    from chiml import Platform

    config, digits = platform_home
    model = str(digits.model_dir)
    cli_a = _cli(config, ["deploy", model, "--name", "alpha", "--replicas", "1"], ["endpoints", "scale", "alpha", "2"])
    cli_b = _cli(config, ["deploy", model, "--name", "beta"], ["deploy", model, "--name", "shared"],
                 ["endpoints", "delete", "beta"])
    notebook_errors: list[BaseException] = []

    def notebook() -> None:
        try:
            platform = Platform.connect(config=config)
            platform.deploy(model, "shared", replicas=1)
            deadline = time.monotonic() + 600
            while "alpha" not in (platform.endpoints.state.get(STATE_KEY) or {}):  # CLI A creates it
                assert time.monotonic() < deadline, "alpha never appeared"
                time.sleep(0.2)
            platform.endpoints.scale("alpha", 1)
        except BaseException as err:  # reported below
            notebook_errors.append(err)

    thread = threading.Thread(target=notebook)
    thread.start()
    outputs = [proc.communicate(timeout=900)[0] for proc in (cli_a, cli_b)]
    thread.join(900)
    assert cli_a.returncode == 0, outputs[0]
    assert cli_b.returncode == 0, outputs[1]
    assert not notebook_errors, notebook_errors

    platform = Platform.connect(config=config)
    backend = platform.endpoints
    records = backend.state.get(STATE_KEY)
    assert sorted(records) == ["alpha", "shared"]  # beta deleted, nothing lost
    # `shared` was created by one writer and updated by the other: both changes are there
    assert records["shared"]["revision"] == 2 and len(_replicas(records["shared"])) == 1
    assert len(_replicas(records["alpha"])) in (1, 2)
    ports = [r["port"] for r in records.values()] + [p["port"] for r in records.values() for p in _replicas(r)]
    assert len(ports) == len(set(ports)), records
    # the state says what runs: every recorded replica answers as its endpoint, nothing else runs
    expected = {f"endpoint-{name}-front" for name in records}
    for name, record in records.items():
        for replica in _replicas(record):
            expected.add(f"endpoint-{name}-{replica['id']}")
            response = httpx.get(f"http://127.0.0.1:{replica['port']}/v2/models/{name}", timeout=10)
            assert response.status_code == 200 and response.json()["name"] == name
        assert httpx.get(f"{backend.url(name)}/v2/health/ready", timeout=10).status_code == 200
    assert set(backend.supervisor.program_names()) == expected
    figures["concurrent deploy/scale/update/delete by 2 CLIs + SDK"] = (
        f"{len(records)} endpoints, {len(ports)} ports, 0 duplicates, 0 lost updates")
