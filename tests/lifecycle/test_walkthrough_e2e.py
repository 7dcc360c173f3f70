"""The lifecycle walkthrough on the real local platform, through the real CLI:
train → tune → register → promote → deploy → predict, for each example.

Also checks what a user looks at: the runs in MLflow, the study in optuna-dashboard and the
curves in TensorBoard (which must pick new runs up without a restart).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest

from tests.lifecycle.conftest import EXAMPLES, REPO

pytestmark = pytest.mark.e2e


def _cli(platform: Any, *args: str, timeout: float = 600) -> dict[str, Any]:
    command = [str(Path(sys.executable).parent / "chiml"), "--config", str(platform.loaded.path), *args, "--json"]
    env = {**os.environ, "CHIML_HOME": str(platform.home)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def _service_url(platform: Any, word: str) -> str:
    for service in platform.status():
        if word in service.name and service.url:
            return service.url.rstrip("/")
    pytest.fail(f"no {word} service in {platform.status()}")


def _eventually(check: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{check.__doc__} did not happen within {timeout:.0f} s")
        time.sleep(2)


EXAMPLE_CASES = {
    # example: (train params, tune params, metric)
    "digits_torch": (["epochs=5"], ["epochs=3"], "val_accuracy"),
    "tabular_sklearn": (["epochs=10"], ["epochs=5"], "val_accuracy"),
}


@pytest.mark.parametrize("example", sorted(EXAMPLE_CASES))
def test_walkthrough(local_platform: Any, example: str) -> None:
    platform = local_platform
    train_params, tune_params, metric = EXAMPLE_CASES[example]
    script = f"examples/{example}/train.py"

    trained = _cli(platform, "train", script, *[f"--param={p}" for p in train_params], "--run-name", example)
    assert trained["status"] == "FINISHED" and trained["model_uri"]

    study_name = f"{example}-study"
    # No --metric/--direction: the examples declare ct.objective("val_accuracy", "maximize").
    tuned = _cli(
        platform, "tune", script, "--trials", "3", "--workers", "2", "--study", study_name,
        *[f"--param={p}" for p in tune_params],
    )  # fmt: skip
    assert tuned["direction"] == "maximize" and tuned["best_value"] >= 0.9
    assert tuned["n_complete"] + tuned["n_pruned"] == 3 and tuned["model_uri"]

    name = example.replace("_", "-")
    version = _cli(platform, "models", "register", tuned["parent_run_id"], "--name", name)
    assert version["run_id"] == tuned["best_run_id"]
    _cli(platform, "models", "promote", name, "--version", version["version"], "--alias", "production")
    described = _cli(platform, "models", "describe", name)
    assert described["aliases"] == {"production": version["version"]}

    # Deploy the promoted version and compare the endpoint with the model in-process.
    model_uri = f"models:/{name}@production"
    mlflow.set_tracking_uri(platform.tracking_uri)
    local_model = mlflow.pyfunc.load_model(model_uri)
    sample = np.asarray(json.loads((EXAMPLES / example / "sample.json").read_text())["instances"])
    platform.deploy(model_uri, name)
    try:
        if example == "digits_torch":
            from sklearn.datasets import load_digits

            features, labels = load_digits(return_X_y=True)
            features = features.astype(np.float32)
            served = np.asarray(platform.predict(name, features))
            expected = np.asarray(local_model.predict(features))
            np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4)
            assert (served.argmax(axis=1) == labels).mean() >= 0.9
            served_sample = np.asarray(platform.predict(name, sample.astype(np.float32)))
            assert served_sample.shape == (len(sample), 10)
        else:
            served = np.asarray(platform.predict(name, sample))
            np.testing.assert_array_equal(served.reshape(-1), np.asarray(local_model.predict(sample)).reshape(-1))
    finally:
        platform.endpoints.delete(name)

    # optuna-dashboard lists the study; TensorBoard lists the new run without a restart.
    dashboard = _service_url(platform, "optuna")

    def study_listed() -> bool:
        """optuna-dashboard lists the study"""
        studies = httpx.get(f"{dashboard}/api/studies", timeout=10).json()["study_summaries"]
        return study_name in {s["study_name"] for s in studies}

    _eventually(study_listed)
    tensorboard = _service_url(platform, "tensorboard")
    run_dir = str(Path(trained["tensorboard_dir"]).relative_to(platform.tensorboard_logdir))

    def curves_shown() -> bool:
        """TensorBoard shows the run's val_accuracy curve"""
        tags = httpx.get(f"{tensorboard}/data/plugin/scalars/tags", timeout=10).json()
        return metric in tags.get(run_dir, {})

    _eventually(curves_shown)
