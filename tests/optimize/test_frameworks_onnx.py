"""The ONNX route for the framework examples' models: `chiml optimize` exports the Keras, XGBoost,
LightGBM and CatBoost models (examples/*) to ONNX, gates ONNX Runtime's answers against the
model's own and benchmarks both; the flavors with no ONNX route (JAX as a PythonModel, a
transformers pipeline) are refused with one line that says why and what to do.

Each example runs as plain `python train.py` against the session's MLflow server (it starts its
own run and logs its model, as outside `chiml train`), with few epochs/rounds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from chiml.errors import ChimlError
from chiml.optimize.pipeline import optimize

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
FAST = {"batches": (1, 8), "budget_s": 0.1}

# example: (module, logged flavor, params, the baseline's row name, exporter)
EXPORTED = {
    "keras_digits": ("keras", "tensorflow", {"epochs": 2}, "keras", "keras (tf2onnx)"),
    "xgboost_tabular": ("xgboost", "xgboost", {"rounds": 10}, "xgboost", "onnxmltools"),
    "lightgbm_tabular": ("lightgbm", "lightgbm", {"rounds": 10}, "lightgbm", "onnxmltools"),
    "catboost_tabular": ("catboost", "catboost", {"rounds": 10}, "catboost", "catboost"),
}
# example: (module, params, what the refusal must say)
REFUSED = {
    "jax_digits": ("jax", {"epochs": 1}, "python_function model"),
    "transformers_text": ("transformers", {"epochs": 1}, "transformers pipeline takes raw text"),
}


def _train_and_register(mlflow_uri: str, example: str, params: dict, tmp_path: Path) -> str:
    """Run the example as plain python logging to ``mlflow_uri``; register its model; the URI."""
    from mlflow import MlflowClient

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CHIML_"))}
    env.update({"MLFLOW_TRACKING_URI": mlflow_uri, "MLFLOW_EXPERIMENT_NAME": "onnx-route",
                "CHIML_TB_LOGDIR": str(tmp_path / "tb"), "CHIML_PARAMS": json.dumps(params)})
    done = subprocess.run([sys.executable, str(REPO / "examples" / example / "train.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("onnx-route")
    (logged,) = [m for m in client.search_logged_models([experiment.experiment_id])
                 if m.source_run_id == client.search_runs([experiment.experiment_id],
                                                          order_by=["attributes.start_time DESC"])[0].info.run_id]
    name = example.replace("_", "-")
    client.create_registered_model(name)
    version = client.create_model_version(name, logged.model_uri, run_id=logged.source_run_id,
                                          model_id=logged.model_id)
    client.set_registered_model_alias(name, "production", version.version)
    return f"models:/{name}@production"


@pytest.mark.parametrize("example", sorted(EXPORTED))
def test_framework_model_goes_through_onnx_runtime(platform: SimpleNamespace, mlflow_uri: str, example: str,
                                                   tmp_path: Path) -> None:
    module, flavor, params, baseline, exporter = EXPORTED[example]
    pytest.importorskip(module, reason=f"{module} is not installed: run `make frameworks`")
    uri = _train_and_register(mlflow_uri, example, params, tmp_path)
    report = optimize(platform, uri, "onnxruntime", **FAST)
    assert report.baseline.name == baseline
    assert report.onnx["exporter"] == exporter
    row = report.row("onnxruntime")
    assert row.status == "ok", row.reason
    assert report.chosen == "onnxruntime"
    gate = row.gate
    assert gate is not None and gate["samples"] >= 5
    if flavor == "tensorflow":  # class probabilities: the same numbers and the same classes
        assert report.onnx["task"] == "classifier" and gate["max_abs"] < 1e-4 and gate["top1"] == 1.0
        assert [o["name"] for o in report.onnx["outputs"]] == ["output"]
    else:  # labels and the probability matrix (no ZipMap: a tensor every runtime returns)
        assert report.onnx["task"] == "classifier"
        outputs = {o["name"]: o for o in report.onnx["outputs"]}
        assert set(outputs) == {"label", "probabilities"}
        assert outputs["probabilities"]["dtype"] == "float32" and len(outputs["probabilities"]["shape"]) == 2
        assert gate["top1"] == 1.0 and gate["max_abs"] < 1e-4
    assert all(spec["shape"][0] == -1 for spec in report.onnx["inputs"]), "the batch axis must be dynamic"
    assert set(row.p50_ms) == {1, 8} and np.isfinite(row.speedup or np.nan)


@pytest.mark.parametrize("example", sorted(REFUSED))
def test_flavor_without_onnx_route_is_one_clear_line(platform: SimpleNamespace, mlflow_uri: str, example: str,
                                                     tmp_path: Path) -> None:
    module, params, why = REFUSED[example]
    pytest.importorskip(module, reason=f"{module} is not installed: run `make frameworks`")
    uri = _train_and_register(mlflow_uri, example, params, tmp_path)
    with pytest.raises(ChimlError) as err:
        optimize(platform, uri, "onnxruntime", **FAST)
    message = err.value.message
    assert why in message and "--runtime mlflow" in message and "\n" not in message
