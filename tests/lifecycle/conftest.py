"""Fixtures of the lifecycle tests: a real MLflow server and a platform handle pointing at it.

The lifecycle only asks a platform for four things (tracking URI, Optuna storage, TensorBoard
log dir, the training config), so these tests run against a real ``mlflow server`` of their
own, independent of how a profile starts services. The full walkthrough against the real
local platform is in ``test_walkthrough_e2e.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import httpx
import pytest

from chiml.config import ChimlConfig
from tests.conftest import free_port

if TYPE_CHECKING:
    from chiml.local.postgres import ManagedPostgres

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@dataclass
class LifecyclePlatform:
    """The part of :class:`chiml.Platform` the lifecycle modules use."""

    tracking_uri: str
    optuna_storage: str
    tensorboard_logdir: str
    home: Path
    config: ChimlConfig
    profile: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(name="local"))

    def tracking_credentials(self) -> dict[str, str]:
        return {}  # the test server has no authentication


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (one worker, artifact proxy on) for the session."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not become healthy in 120 s")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def platform(mlflow_uri: str, tmp_path: Path) -> LifecyclePlatform:
    """A fresh home (journal storage, TensorBoard dir) per test, the shared MLflow server."""
    return LifecyclePlatform(
        tracking_uri=mlflow_uri,
        optuna_storage=str(tmp_path / "optuna" / "studies.journal"),
        tensorboard_logdir=str(tmp_path / "tensorboard"),
        home=tmp_path,
        config=ChimlConfig(),
    )


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    """A folder for small throwaway training scripts."""
    folder = tmp_path / "scripts"
    folder.mkdir()
    return folder


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedPostgres]:
    """A real PostgreSQL server on 127.0.0.1 with the `optuna` database (chiml's own managed
    cluster, as the local profile runs it), standing in for the cluster's CloudNativePG."""
    from chiml.config import load_config
    from chiml.local.postgres import ManagedPostgres
    from tests.conftest import write_local_config

    folder = tmp_path_factory.mktemp("postgres")
    saved = os.environ.pop("CHIML_HOME", None)
    try:
        server = ManagedPostgres(load_config(write_local_config(folder, database="postgresql")))
    finally:
        if saved is not None:
            os.environ["CHIML_HOME"] = saved
    server.init()
    program = server.program()
    command = ["runuser", "-u", program.user, "--", *program.command] if program.user else program.command
    log = (folder / "postgres.log").open("wb")
    process = subprocess.Popen(command, cwd=program.directory, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        server.create_databases()
        yield server
    finally:
        os.killpg(process.pid, 2)  # SIGINT to runuser and the server: PostgreSQL's fast shutdown
        process.wait(timeout=60)
        log.close()
        if not str(server.data_dir).startswith(str(folder)):
            shutil.rmtree(server.data_dir.parent, ignore_errors=True)
