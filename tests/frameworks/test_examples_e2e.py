"""Every framework example on a real local platform, through the real CLI:
train → (flavor, signature, input example, per-epoch metrics) → register → deploy → predict,
and the endpoint's answer equals the logged model's own answer; then `chiml tune` on it.

One platform for the whole session (``local_platform`` in tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

# example: (import that must work, MLflow flavor it logs, train params, tune params)
CASES: dict[str, tuple[str, str, list[str], list[str]]] = {
    "keras_digits": ("keras", "tensorflow", ["epochs=3"], ["epochs=2"]),
    "jax_digits": ("jax", "python_function", ["epochs=5"], ["epochs=2"]),
    "xgboost_tabular": ("xgboost", "xgboost", ["rounds=20"], ["rounds=10"]),
    "lightgbm_tabular": ("lightgbm", "lightgbm", ["rounds=20"], ["rounds=10"]),
    "catboost_tabular": ("catboost", "catboost", ["rounds=20"], ["rounds=10"]),
    "lightning_digits": ("lightning", "pytorch", ["epochs=3"], ["epochs=2"]),
    "transformers_text": ("transformers", "transformers", ["epochs=2"], ["epochs=1"]),
}


def _cli(platform: Any, *args: str, timeout: float = 900) -> dict[str, Any]:
    command = [str(Path(sys.executable).parent / "chiml"), "--config", str(platform.loaded.path), *args, "--json"]
    env = {**os.environ, "CHIML_HOME": str(platform.home)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def _sample(example: str) -> Any:
    instances = json.loads((EXAMPLES / example / "sample.json").read_text())["instances"]
    if example == "transformers_text":
        return instances
    return np.asarray(instances, dtype=np.float32 if "digits" in example else np.float64)


def _same(served: Any, expected: Any) -> None:
    if hasattr(expected, "to_dict"):  # a DataFrame (transformers: label and score columns)
        assert isinstance(served, dict), f"expected named outputs, got {type(served).__name__}"
        for column in expected.columns:
            got = np.asarray(served[column]).reshape(-1)
            want = expected[column].to_numpy()
            if want.dtype.kind == "f":
                np.testing.assert_allclose(got.astype(float), want, rtol=1e-4, atol=1e-5)
            else:
                assert [str(v) for v in got] == [str(v) for v in want]
        return
    want = np.asarray(expected)
    got = np.asarray(served).reshape(want.shape)
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("example", sorted(CASES))
def test_train_register_deploy_predict(local_platform: Any, example: str) -> None:
    module, flavor, train_params, _ = CASES[example]
    pytest.importorskip(module, reason=f"{module} is not installed: run `make frameworks`")
    platform = local_platform
    trained = _cli(platform, "train", f"examples/{example}/train.py", *[f"--param={p}" for p in train_params],
                   "--run-name", example)  # fmt: skip
    assert trained["status"] == "FINISHED" and trained["model_uri"], trained

    mlflow.set_tracking_uri(platform.tracking_uri)
    client = mlflow.MlflowClient()
    run = client.get_run(trained["run_id"])
    assert run.data.params, "no parameters logged"
    history = client.get_metric_history(trained["run_id"], "val_accuracy")
    assert len(history) >= 2, "val_accuracy must be logged every epoch/round"
    events = list(Path(trained["tensorboard_dir"]).rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard events written"

    info = mlflow.models.get_model_info(trained["model_uri"])
    assert flavor in info.flavors, f"{example} logged flavors {sorted(info.flavors)}, expected {flavor}"
    assert info.signature is not None and info.saved_input_example_info is not None

    name = example.replace("_", "-")
    version = _cli(platform, "models", "register", trained["run_id"], "--name", name)
    model_uri = f"models:/{name}/{version['version']}"
    local_input = _sample(example)
    if example == "transformers_text":  # the pipeline's signature names its input column "text"
        import pandas as pd

        local_input = pd.DataFrame({"text": local_input})
    expected = mlflow.pyfunc.load_model(model_uri).predict(local_input)
    platform.deploy(model_uri, name)
    try:
        _same(platform.predict(name, _sample(example)), expected)
    finally:
        platform.endpoints.delete(name)


@pytest.mark.parametrize("example", sorted(CASES))
def test_tune(local_platform: Any, example: str) -> None:
    module, _, _, tune_params = CASES[example]
    pytest.importorskip(module, reason=f"{module} is not installed: run `make frameworks`")
    tuned = _cli(local_platform, "tune", f"examples/{example}/train.py", "--trials", "2", "--workers", "1",
                 "--study", f"{example}-study", *[f"--param={p}" for p in tune_params])  # fmt: skip
    # The examples declare ct.objective("val_accuracy", "maximize"): no --metric needed.
    assert tuned["direction"] == "maximize"
    assert tuned["n_complete"] + tuned["n_pruned"] == 2 and tuned["model_uri"]
    assert 0.5 < tuned["best_value"] <= 1.0


@pytest.mark.parametrize("example", sorted(CASES))
def test_runs_as_plain_python(example: str, tmp_path: Path) -> None:
    module, *_ = CASES[example]
    pytest.importorskip(module, reason=f"{module} is not installed: run `make frameworks`")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["CHIML_TB_LOGDIR"] = str(tmp_path / "tb")
    env["CHIML_PARAMS"] = json.dumps(dict(p.split("=") for p in CASES[example][3]))
    done = subprocess.run([sys.executable, str(EXAMPLES / example / "train.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "val_accuracy" in done.stdout and "nothing is sent to MLflow" in done.stderr
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
