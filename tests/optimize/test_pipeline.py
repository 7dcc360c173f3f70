"""`optimize` end to end against a real MLflow server: export, per-runtime processes, gate,
benchmark, MLflow records, the model-version link, and serving the chosen artifact."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from chiml.errors import ChimlError, InvalidInputError, NotFoundError
from chiml.optimize import tracking
from chiml.optimize.artifacts import resolve_runtime_artifact
from chiml.optimize.candidates import _availability
from chiml.optimize.pipeline import optimize
from tests.optimize import models

pytestmark = pytest.mark.e2e
FAST = {"batches": (1, 8), "budget_s": 0.1}


def _tensorrt_missing() -> str | None:
    """Why TensorRT cannot run on this host (None on a GPU host that has it): asserted only then."""
    return _availability("tensorrt", Path.cwd(), allow_deepsparse=False, explicit=True, step=None)[1]


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _optimize_runs(uri: str, name: str) -> list:
    client = _client(uri)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], f"tags.`{tracking.TAG_MODEL}` = '{name}'")


@pytest.fixture(scope="module")
def torch_report(platform: SimpleNamespace, digits_torch: str):
    return optimize(platform, digits_torch, "auto", int8=True, **FAST)


def test_auto_measures_every_cpu_runtime_and_picks_a_passing_one(torch_report, mlflow_uri: str) -> None:
    report = torch_report
    names = [row.name for row in report.rows]
    assert names == ["torch eager", "onnxruntime", "onnxruntime-int8", "openvino", "deepsparse", "tensorrt"]
    status = {row.name: row.status for row in report.rows}
    assert status["onnxruntime"] == "ok" and status["openvino"] == "ok"
    assert status["deepsparse"] == "unavailable" and "opt in" in report.row("deepsparse").reason
    missing = _tensorrt_missing()
    if missing is None:  # a GPU host with TensorRT: measured like the others
        assert status["tensorrt"] in ("ok", "rejected"), report.row("tensorrt").reason
    else:
        assert status["tensorrt"] == "unavailable" and report.row("tensorrt").reason == missing
    # INT8 weights move the logits far beyond 1e-4: rejected, with the numbers
    int8 = report.row("onnxruntime-int8")
    assert int8.status == "rejected" and int8.reason.startswith("outside tolerance: max abs")
    assert int8.gate is not None and int8.gate["max_abs"] > 1e-3

    assert report.chosen in ("onnxruntime", "openvino")
    chosen, base = report.row(report.chosen), report.baseline
    fastest = min((r for r in report.rows if r.status == "ok"), key=lambda r: r.p50_ms[1])
    assert chosen is fastest
    assert chosen.speedup == pytest.approx(base.p50_ms[1] / chosen.p50_ms[1])
    for row in report.rows:
        if row.status in ("ok", "baseline"):
            assert set(row.p50_ms) == {1, 8} and row.throughput and row.throughput > 0
    assert chosen.gate["top1"] == 1.0 and chosen.gate["max_abs"] < 1e-4

    _title, _columns, rows = report.table_rows()
    text = "\n".join("  ".join(row) for row in rows)
    for name in names:
        assert name in text
    assert f"{chosen.speedup:.1f}x" in text


def test_run_is_recorded_in_mlflow_and_linked_to_the_version(torch_report, mlflow_uri: str) -> None:
    client = _client(mlflow_uri)
    run = client.get_run(torch_report.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tracking.TAG_MODEL] == "digits-mlp"
    assert run.data.tags[tracking.TAG_CHOSEN] == torch_report.chosen
    assert "onnxruntime/b1_p50_ms" in run.data.metrics and "torch eager/b1_p50_ms" in run.data.metrics
    assert run.data.params["opset"] == "17"

    def files(path: str = "") -> set[str]:
        out: set[str] = set()
        for item in client.list_artifacts(run.info.run_id, path):
            out |= files(item.path) if item.is_dir else {item.path}
        return out

    artifacts = files()
    for expected in ("onnx/model.onnx", "onnx/signature.json", "gate/gate-inputs.npz", "report.json", "latency.png",
                     "runtimes.json",
                     "runtimes/onnxruntime/model.onnx", "runtimes/onnxruntime/chiml-runtime.json",
                     "runtimes/openvino/model.onnx"):
        assert expected in artifacts
    assert not any(path.startswith("runtimes/onnxruntime-int8") for path in artifacts)  # rejected: not offered

    version = client.get_model_version_by_alias("digits-mlp", "production")
    assert version.tags[tracking.VERSION_TAG_RUN] == torch_report.run_id
    assert version.tags[tracking.VERSION_TAG_CHOSEN] == torch_report.chosen


def test_chosen_artifact_serves_the_original_answers(torch_report, platform: SimpleNamespace,
                                                     digits_torch: str, mlflow_uri: str) -> None:
    import mlflow.pytorch
    import torch

    from chiml_serving.registry import runtime_class

    runtime, path = resolve_runtime_artifact(platform, digits_torch, "auto")
    assert runtime == torch_report.chosen_runtime
    assert (path / "model.onnx").is_file() and (path / "chiml-runtime.json").is_file()
    model = runtime_class(runtime)("digits", path)
    model.load()
    _, _, held, _ = models.digits()
    answer = model.predict({"instances": held.tolist()})
    mlflow.set_tracking_uri(mlflow_uri)
    try:
        original = mlflow.pytorch.load_model(digits_torch)
    finally:
        mlflow.set_tracking_uri(models.NOWHERE)
    with torch.inference_mode():
        want = original(torch.from_numpy(held)).numpy()
    np.testing.assert_allclose(np.array(answer["predictions"]), want, atol=1e-4, rtol=1e-3)

    named, ov_path = resolve_runtime_artifact(platform, digits_torch, "openvino")
    assert named == "openvino" and ov_path != path
    with pytest.raises(ChimlError, match="no deepsparse build that passed the gate") as err:
        resolve_runtime_artifact(platform, digits_torch, "deepsparse")
    assert "--target deepsparse" in (err.value.hint or "")


def test_sklearn_throughput_objective_and_unsupported_operator(platform: SimpleNamespace,
                                                               digits_sklearn: str) -> None:
    report = optimize(platform, digits_sklearn, "auto", objective="throughput", **FAST)
    assert report.baseline.name == "scikit-learn"
    openvino = report.row("openvino")
    assert openvino.status == "rejected"
    assert openvino.reason == "cannot load/compile: unsupported operator(s): ai.onnx.ml.LinearClassifier"
    assert "LinearClassifier" in openvino.detail
    assert report.chosen == "onnxruntime"
    ort = report.row("onnxruntime")
    assert ort.speedup == pytest.approx(ort.throughput / report.baseline.throughput)
    assert ort.gate["top1"] >= 0.99


def _untouched(uri: str, name: str) -> None:
    client = _client(uri)
    for version in client.search_model_versions(f"name='{name}'"):
        assert not any(key.startswith("chiml.optimize") for key in version.tags), version.tags
    assert _optimize_runs(uri, name) == []


def test_model_without_signature_is_refused_and_left_untouched(platform: SimpleNamespace, mlflow_uri: str) -> None:
    models.log_sklearn(mlflow_uri, "nosig", models.sklearn_logreg(), signature=False)
    with pytest.raises(InvalidInputError, match="has no signature") as err:
        optimize(platform, "models:/nosig@production", **FAST)
    assert "--sample" in (err.value.hint or "")
    _untouched(mlflow_uri, "nosig")


def test_unsupported_operator_is_refused_and_left_untouched(platform: SimpleNamespace, mlflow_uri: str) -> None:
    import torch

    class Svd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.svd(self.linear(x).reshape(-1, 2, 5))[1]

    models.log_torch(mlflow_uri, "svd", Svd().eval())
    with pytest.raises(ChimlError, match=r"unsupported operator aten\._linalg_svd"):
        optimize(platform, "models:/svd@production", **FAST)
    _untouched(mlflow_uri, "svd")


def test_missing_runtime_unknown_target_and_bad_uris(platform: SimpleNamespace, digits_sklearn: str,
                                                     mlflow_uri: str, tmp_path: Path) -> None:
    before = len(_optimize_runs(mlflow_uri, "digits-logreg"))
    tags = dict(_client(mlflow_uri).get_model_version_by_alias("digits-logreg", "production").tags)
    missing = _tensorrt_missing()
    if missing is not None:  # on a GPU host with TensorRT the target runs instead
        with pytest.raises(ChimlError, match=f"tensorrt is unavailable here: {missing[:20]}"):
            optimize(platform, digits_sklearn, "tensorrt", **FAST)
    with pytest.raises(InvalidInputError, match="unknown target 'tvm'"):
        optimize(platform, digits_sklearn, "tvm", **FAST)
    with pytest.raises(InvalidInputError, match="not a registered model URI"):
        optimize(platform, "runs:/abc/model", **FAST)
    with pytest.raises(NotFoundError, match="'nope' @production not found"):
        optimize(platform, "models:/nope@production", **FAST)
    assert len(_optimize_runs(mlflow_uri, "digits-logreg")) == before
    assert dict(_client(mlflow_uri).get_model_version_by_alias("digits-logreg", "production").tags) == tags
    assert not list((Path(platform.home) / "optimize").glob("run-*"))  # work dirs cleaned up
