"""End to end on the local profile: MLflow registry -> deploy -> predict -> scale -> down/up -> delete.

Uses the session's shared ``local_platform`` (a real platform on a temp CHIML_HOME); it is left
up for the other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from chiml.errors import ChimlError
from chiml.serving.local import STATE_KEY

pytestmark = pytest.mark.e2e

NAME = "digits-e2e"


def _register_digits(tracking_uri: str, shift: int = 0) -> tuple[object, np.ndarray]:
    """Log a digits classifier to the platform's MLflow, register it, alias it @production
    (``shift``: a next version that predicts ``(digit + shift) % 10``)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=200).fit(X[:800], (y[:800] + shift) % 10)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                model, name="model", signature=infer_signature(X, model.predict(X)),
                registered_model_name=NAME, pip_requirements=[],
            )  # fmt: skip
        mlflow.MlflowClient(tracking_uri).set_registered_model_alias(NAME, "production", info.registered_model_version)
    finally:
        mlflow.set_tracking_uri(previous)
    return model, X[800:]


def _chiml(platform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chiml.cli.main", "--config", str(platform.loaded.path), *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _endpoint_processes(home: Path) -> list[psutil.Process]:
    return [
        proc
        for proc in psutil.process_iter(["cmdline"])
        if "chiml_serving" in (proc.info["cmdline"] or []) and NAME in (proc.info["cmdline"] or [])
        and any(str(home) in part for part in proc.info["cmdline"])
    ]


def test_endpoint_lifecycle(local_platform, tmp_path: Path) -> None:
    platform = local_platform
    model, X = _register_digits(platform.tracking_uri)

    endpoint = platform.deploy(f"models:/{NAME}@production", name=NAME)
    assert endpoint.status == "ready" and endpoint.runtime == "mlflow" and endpoint.replicas == 1
    meta = httpx.get(f"{endpoint.url}/v2/models/{NAME}", timeout=10).json()
    assert meta["platform"] == "mlflow"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 64]}]
    assert meta["outputs"] == [{"name": "output-0", "datatype": "INT64", "shape": [-1]}]

    # SDK: numpy in, numpy out, equal to the in-process model
    np.testing.assert_array_equal(platform.predict(NAME, X[:200]), model.predict(X[:200]))

    # CLI: predict from a file, list as JSON
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps({"inputs": X[:5].tolist()}))
    result = _chiml(platform, "predict", NAME, "--file", str(sample), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"][0]["data"] == model.predict(X[:5]).tolist()
    bad = _chiml(platform, "predict", NAME, "--data", '{"inputs": [[1, 2, 3]]}')
    assert bad.returncode == 1 and "shape [1, 3] does not match" in bad.stderr and "Traceback" not in bad.stderr
    listed = _chiml(platform, "endpoints", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [e for e in json.loads(listed.stdout) if e["name"] == NAME]
    assert row["status"] == "ready" and row["detail"].startswith(f"{NAME} version ")

    # scale to 2: two processes on two ports behind the same URL, both answering the same predictions
    scaled = platform.endpoints.scale(NAME, 2)
    assert scaled.replicas == 2 and scaled.status == "ready" and len(set(scaled.ports)) == 2
    assert scaled.url == endpoint.url and scaled.url not in scaled.urls
    body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [3, 64], "data": X[:3].ravel().tolist()}]}
    for url in [*scaled.urls, scaled.url]:
        response = httpx.post(f"{url}/v2/models/{NAME}/infer", json=body, timeout=30)
        assert response.json()["outputs"][0]["data"] == model.predict(X[:3]).tolist()
    assert len(_endpoint_processes(platform.home)) == 2
    described = _chiml(platform, "endpoints", "describe", NAME, "--json")
    assert described.returncode == 0, described.stderr
    data = json.loads(described.stdout)
    assert [r["front"][:2] for r in data["replica_info"]] == ["UP", "UP"] and data["events"][-1]["to"] == 2
    status = _chiml(platform, "status", "--json")
    assert status.returncode == 0 and f"endpoint {NAME}" in status.stdout and scaled.url in status.stdout

    # a new version promoted to @production: deploying onto the name rolls it in, same URL
    next_model, _ = _register_digits(platform.tracking_uri, shift=1)
    updated = _chiml(platform, "deploy", f"models:/{NAME}@production", "--name", NAME, "--json")
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["url"] == endpoint.url and json.loads(updated.stdout)["replicas"] == 2
    np.testing.assert_array_equal(platform.predict(NAME, X[:50]), next_model.predict(X[:50]))

    # down / up: the registry in state survives and the endpoint comes back by itself
    platform.profile.down(yes=True)
    assert not _endpoint_processes(platform.home)
    assert platform.endpoints.get(NAME).status == "stopped"
    platform.profile.up()
    again = platform.endpoints.get(NAME)
    assert again.status == "ready" and again.url == endpoint.url and len(again.ports) == 2
    np.testing.assert_array_equal(platform.predict(NAME, X[:50]), next_model.predict(X[:50]))

    platform.endpoints.scale(NAME, 1)
    assert len(_endpoint_processes(platform.home)) == 1

    # delete: no process, program, log, state or files left
    deleted = _chiml(platform, "endpoints", "delete", NAME)
    assert deleted.returncode == 0, deleted.stderr
    assert not _endpoint_processes(platform.home)
    assert NAME not in (platform.profile.state.get(STATE_KEY) or {})
    assert not (platform.home / "endpoints" / NAME).exists()
    supervisor = platform.profile.supervisor
    assert not [p for p in supervisor.program_names() if p.startswith(f"endpoint-{NAME}-")]
    assert not list(supervisor.logs.glob(f"endpoint-{NAME}-*"))
    with pytest.raises(ChimlError, match=f"no endpoint named '{NAME}'"):
        platform.predict(NAME, X[:1])
