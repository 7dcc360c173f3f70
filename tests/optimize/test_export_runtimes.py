"""Export to ONNX and run the compiled model on each CPU runtime — all for real, no MLflow server
(models are saved with ``mlflow.<flavor>.save_model`` to a temporary directory)."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from chiml.errors import ChimlError
from chiml.optimize import candidates as cands
from chiml.optimize.bench import BenchSettings, run_worker
from chiml.optimize.export import MAX_IR_VERSION, OPSET, export
from chiml.optimize.pipeline import brief
from chiml.optimize.source import InputSpec
from tests.optimize import models

INPUTS = [InputSpec("input", "float32", [-1, 64])]


def _save_torch(path: Path, module: object, fmt: str = "pt2") -> Path:
    import mlflow.pytorch
    from mlflow.models import infer_signature

    _, _, held, _ = models.digits()
    import torch

    with torch.no_grad():
        out = module(torch.from_numpy(held[:8])).numpy()
    mlflow.pytorch.save_model(module, str(path), signature=infer_signature(held[:8], out),
                              input_example=held[:8], serialization_format=fmt)
    return path


@pytest.fixture(scope="module")
def mlp() -> object:
    return models.torch_mlp(hidden=32, epochs=5)


@pytest.fixture(scope="module")
def sample() -> dict[str, np.ndarray]:
    _, _, held, _ = models.digits()
    return {"input": held}


@pytest.fixture(scope="module")
def torch_artifacts(tmp_path_factory: pytest.TempPathFactory, mlp: object,
                    sample: dict[str, np.ndarray]) -> tuple[object, dict[str, Path]]:
    root = tmp_path_factory.mktemp("torch")
    exported = export("pytorch", _save_torch(root / "model", mlp), INPUTS, sample, root / "onnx")
    dirs = {name: cands.build_artifact(cands.Candidate(name, name), exported, root / "artifacts", {})
            for name in ("onnxruntime", "openvino")}
    return exported, dirs


def test_torch_pt2_export_is_valid_ir9_opset17_with_dynamic_batch(torch_artifacts: tuple) -> None:
    import onnx

    exported, _ = torch_artifacts
    model = onnx.load(str(exported.path))
    assert model.ir_version <= MAX_IR_VERSION
    assert {op.domain: op.version for op in model.opset_import}[""] == OPSET
    onnx.checker.check_model(model, full_check=True)
    assert exported.exporter == "dynamo"  # MLflow 3's pt2 format loads a GraphModule
    assert exported.inputs == [{"name": "input", "dtype": "float32", "shape": [-1, 64]}]
    assert exported.outputs[0]["shape"] == [-1, 10]
    assert exported.task == "classifier"


def test_torch_pickle_format_uses_the_torchscript_exporter(tmp_path: Path, mlp: object,
                                                           sample: dict[str, np.ndarray]) -> None:
    exported = export("pytorch", _save_torch(tmp_path / "model", mlp, "pickle"), INPUTS, sample, tmp_path / "onnx")
    assert exported.exporter == "torchscript"
    assert exported.ir_version <= MAX_IR_VERSION


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtime_engines_match_torch(runtime: str, torch_artifacts: tuple, mlp: object,
                                     sample: dict[str, np.ndarray]) -> None:
    import torch

    from chiml_serving.runtimes import engine_class

    _, dirs = torch_artifacts
    engine = engine_class(runtime)(dirs[runtime], threads=1)
    for batch in (1, 37, 64):
        x = sample["input"][:batch]
        with torch.no_grad():
            want = mlp(torch.from_numpy(x)).numpy()
        got = engine.infer({"input": x})["output"]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
    if runtime == "openvino":
        assert len(engine.requests) == 3  # one static-shape compiled model per batch size


def test_engine_rejects_wrong_shapes_with_the_expected_shape(torch_artifacts: tuple) -> None:
    from chiml_serving.runtimes.onnxruntime import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(torch_artifacts[1]["onnxruntime"])
    with pytest.raises(ValueError, match=r"shape \[2, 63\].*\[-1, 64\]"):
        engine.infer({"input": np.zeros((2, 63), np.float32)})
    # one sample without its batch axis is accepted
    assert engine.infer({"input": np.zeros(64, np.float64)})["output"].shape == (1, 10)


def test_serving_model_class_loads_predicts_and_survives_pickling(torch_artifacts: tuple, mlp: object,
                                                                  sample: dict[str, np.ndarray]) -> None:
    import torch

    from chiml_serving.registry import runtime_class

    cls = runtime_class("onnxruntime")
    model = cls("digits", torch_artifacts[1]["onnxruntime"])
    assert model.load()
    assert model.get_input_types() == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    x = sample["input"][:3]
    answer = model.predict({"instances": x.tolist()})
    with torch.no_grad():
        np.testing.assert_allclose(np.array(answer["predictions"]), mlp(torch.from_numpy(x)).numpy(), atol=1e-4)
    clone = pickle.loads(pickle.dumps(model))  # what kserve --workers does: the engine is rebuilt
    assert clone.runtime == "onnxruntime"
    assert clone.predict({"instances": x.tolist()}) == answer


def test_unsupported_operator_is_named(tmp_path: Path, sample: dict[str, np.ndarray]) -> None:
    import torch

    class Svd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.linear(x).reshape(-1, 2, 5)
            return torch.linalg.svd(y)[1]

    saved = _save_torch(tmp_path / "model", Svd().eval())
    with pytest.raises(ChimlError, match=r"unsupported operator aten\._linalg_svd"):
        export("pytorch", saved, INPUTS, sample, tmp_path / "onnx")


def test_sklearn_export_matches_predict_proba_and_openvino_names_the_missing_operator(
        tmp_path: Path, sample: dict[str, np.ndarray]) -> None:
    import mlflow.sklearn

    from chiml_serving.runtimes.onnxruntime import OnnxRuntimeEngine
    from chiml_serving.runtimes.openvino import OpenVinoEngine

    clf = models.sklearn_logreg()
    mlflow.sklearn.save_model(clf, str(tmp_path / "model"), serialization_format="cloudpickle")
    exported = export("sklearn", tmp_path / "model", INPUTS, sample, tmp_path / "onnx")
    assert [o["name"] for o in exported.outputs] == ["label", "probabilities"]
    assert exported.task == "classifier"
    directory = cands.build_artifact(cands.Candidate("onnxruntime", "onnxruntime"), exported, tmp_path / "a", {})
    got = OnnxRuntimeEngine(directory).infer(sample)
    np.testing.assert_allclose(got["probabilities"], clf.predict_proba(sample["input"]), atol=1e-5)
    np.testing.assert_array_equal(got["label"], clf.predict(sample["input"]))
    ov_dir = cands.build_artifact(cands.Candidate("openvino", "openvino"), exported, tmp_path / "a", {})
    with pytest.raises(RuntimeError) as err:
        OpenVinoEngine(ov_dir)
    assert brief(str(err.value)) == "unsupported operator(s): ai.onnx.ml.LinearClassifier"


def test_worker_measures_and_reports_failures(torch_artifacts: tuple, tmp_path: Path,
                                              sample: dict[str, np.ndarray]) -> None:
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, **sample)
    settings = BenchSettings(batches=(1, 8), threads=1, warmup_s=0.01, budget_s=0.05, min_iters=5)
    ok = run_worker(sys.executable, cands.Candidate("onnxruntime", "onnxruntime").engine,
                    torch_artifacts[1]["onnxruntime"], inputs, tmp_path, "ort", settings)
    assert ok.ok, ok.error
    assert set(ok.timings) == {1, 8}
    for timing in ok.timings.values():
        assert 0 < timing["p50_ms"] <= timing["p99_ms"] and timing["iters"] >= 5
    assert ok.outputs["output"].shape == (len(sample["input"]), 10)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "chiml-runtime.json").write_text((torch_artifacts[1]["onnxruntime"] / "chiml-runtime.json").read_text())
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    bad = run_worker(sys.executable, cands.Candidate("onnxruntime", "onnxruntime").engine, broken, inputs,
                     tmp_path, "bad", settings)
    assert (not bad.ok and bad.stage == "load" and "InvalidProtobuf" in (bad.error or "")) or "protobuf" in (
        bad.error or "").lower()

    slow = BenchSettings(batches=(1,), threads=1, warmup_s=30, budget_s=30, timeout_s=3)
    late = run_worker(sys.executable, cands.Candidate("onnxruntime", "onnxruntime").engine,
                      torch_artifacts[1]["onnxruntime"], inputs, tmp_path, "late", slow)
    assert not late.ok and late.error == "timed out after 3s"


def test_dataframe_signature_becomes_one_float_matrix(tmp_path: Path) -> None:
    """A scikit-learn model fitted on a DataFrame: column signature -> one [-1, n] input, and the
    original is fed a DataFrame with the right columns (no feature-name mismatch)."""
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import Model, infer_signature
    from sklearn.linear_model import LogisticRegression

    from chiml.optimize.baseline import OriginalModelEngine
    from chiml.optimize.source import _as_arrays, _schema_inputs, finish_sample

    x, y, held, _ = models.digits()
    columns = [f"px{i}" for i in range(64)]
    frame = pd.DataFrame(x[:, :64], columns=columns)
    clf = LogisticRegression(max_iter=200).fit(frame, y)
    example = pd.DataFrame(held[:16], columns=columns)
    mlflow.sklearn.save_model(clf, str(tmp_path / "model"), signature=infer_signature(example, clf.predict(example)),
                              input_example=example, serialization_format="cloudpickle")
    mlmodel = Model.load(str(tmp_path / "model"))
    inputs = _schema_inputs(mlmodel.signature)
    assert [(i.name, i.dtype, i.shape, i.columns) for i in inputs] == [("input", "float32", [-1, 64], columns)]
    sample = finish_sample(_as_arrays(mlmodel.load_input_example(str(tmp_path / "model")), inputs), inputs, "example")
    assert sample["input"].shape == (16, 64) and sample["input"].dtype == np.float32
    exported = export("sklearn", tmp_path / "model", inputs, sample, tmp_path / "onnx")
    original = OriginalModelEngine(tmp_path / "model", options={
        "flavor": "sklearn", "inputs": ["input"], "outputs": ["label", "probabilities"], "columns": columns,
        "task": exported.task})
    want = original.infer(sample)
    np.testing.assert_allclose(want["probabilities"], clf.predict_proba(example), atol=1e-6)
    directory = cands.build_artifact(cands.Candidate("onnxruntime", "onnxruntime"), exported, tmp_path / "a", {})
    from chiml_serving.runtimes.onnxruntime import OnnxRuntimeEngine

    got = OnnxRuntimeEngine(directory).infer(sample)
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)
