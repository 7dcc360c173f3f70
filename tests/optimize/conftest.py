"""Fixtures for the optimize tests: a real MLflow server (one worker, SQLite) on a free port,
and a platform handle pointing at it, with reference models registered once per session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.conftest import free_port


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, 15)  # the server and its uvicorn child (its own session)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


@pytest.fixture(scope="session")
def chiml_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chiml-home")


@pytest.fixture(scope="session")
def platform(mlflow_uri: str, chiml_home: Path) -> SimpleNamespace:
    """What the optimize pipeline needs of a Platform: tracking URI, home and config."""
    from chiml.config import ChimlConfig

    return SimpleNamespace(tracking_uri=mlflow_uri, tracking_credentials=dict, home=chiml_home, config=ChimlConfig(),
                           profile=SimpleNamespace(name="local"))


@pytest.fixture(scope="session")
def digits_torch(mlflow_uri: str) -> str:
    from tests.optimize import models

    models.log_torch(mlflow_uri, "digits-mlp", models.torch_mlp())
    return "models:/digits-mlp@production"


@pytest.fixture(scope="session")
def digits_sklearn(mlflow_uri: str) -> str:
    from tests.optimize import models

    models.log_sklearn(mlflow_uri, "digits-logreg", models.sklearn_logreg())
    return "models:/digits-logreg@production"
