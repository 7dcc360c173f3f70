"""One model, every runtime, one request: the same body gets the same answer.

A digits MLP (torch, logged with MLflow from float64 data: its signature is ``input-0`` FP64
``[-1, 64]`` -> ``output-0`` FP32 ``[-1, 10]``) is served by the MLflow runtime and by each
compiled runtime from the artifact ``chiml optimize`` builds (an ONNX model whose own tensors
are ``input`` float32 -> ``output``). A scikit-learn classifier covers the other mapping (its
ONNX tensors are ``input`` -> ``label``/``probabilities``). Each runtime is served by the real
REST app in-process (ASGI), so the whole request path runs: decoding, the interface mapping,
the model, encoding.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from chiml_contract import runtimes
from chiml_serving.app import ServingApp
from chiml_serving.base import ChimlModel
from chiml_serving.registry import runtime_class
from tests.serving.conftest import Digits, compile_artifact

CPU_COMPILED = [name for name in runtimes.names(compiled=True) if runtimes.get(name).device == "cpu"]


def _available(name: str) -> bool:
    return importlib.util.find_spec(runtimes.get(name).library) is not None


def _call(model: ChimlModel, method: str, path: str, body: Any = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=ServingApp(model))
        async with httpx.AsyncClient(transport=transport, base_url="http://endpoint") as client:
            return await client.request(method, path, json=body)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def mlp(digits: Digits, tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """A torch MLP on digits, logged with a float64 signature (what infer_signature of X gives)."""
    import mlflow.pytorch
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema
    from mlflow.types import TensorSpec as MlflowTensorSpec

    from tests.optimize import models

    net = models.torch_mlp(hidden=32, epochs=20)

    class Float64Input(torch.nn.Module):  # the pyfunc hands over float64 rows as sent
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.float())

    signature = ModelSignature(inputs=Schema([MlflowTensorSpec(np.dtype(np.float64), (-1, 64))]),
                               outputs=Schema([MlflowTensorSpec(np.dtype(np.float32), (-1, 10))]))
    path = tmp_path_factory.mktemp("mlp") / "model"
    mlflow.pytorch.save_model(Float64Input().eval(), str(path), signature=signature, pip_requirements=[],
                              serialization_format="pickle")
    return Digits(path, net, digits.X / 16.0)


@pytest.fixture(scope="module")
def served(mlp: Digits, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ChimlModel]:
    """Every runtime that can run here, loaded on the same model (DeepSparse lives in its own env)."""
    models: dict[str, ChimlModel] = {}
    mlflow = runtime_class("mlflow")("digits", mlp.model_dir)
    mlflow.load()
    models["mlflow"] = mlflow
    root = tmp_path_factory.mktemp("compiled")
    for name in CPU_COMPILED:
        if not _available(name):
            continue
        directory = compile_artifact(mlp.model_dir, name, root / name, mlp.X[:200], flavor="pytorch")
        model = runtime_class(name)("digits", directory)
        model.load()
        models[name] = model
    return models


def test_every_runtime_here_was_served(served: dict[str, ChimlModel]) -> None:
    # onnxruntime and openvino are platform dependencies (chiml[runtimes]): never skipped
    assert {"mlflow", "onnxruntime", "openvino"} <= set(served)


@pytest.mark.parametrize("runtime", CPU_COMPILED)
def test_same_metadata(served: dict[str, ChimlModel], runtime: str) -> None:
    if runtime not in served:
        pytest.skip(f"{runtime} is not installed in this environment")
    reference = _call(served["mlflow"], "GET", "/v2/models/digits").json()
    answer = _call(served[runtime], "GET", "/v2/models/digits").json()
    assert answer["platform"] == runtime
    assert answer["inputs"] == reference["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 64]}]
    assert answer["outputs"] == reference["outputs"] == [{"name": "output-0", "datatype": "FP32", "shape": [-1, 10]}]


@pytest.mark.parametrize("runtime", CPU_COMPILED)
def test_one_request_body_one_answer(served: dict[str, ChimlModel], mlp: Digits, runtime: str) -> None:
    if runtime not in served:
        pytest.skip(f"{runtime} is not installed in this environment")
    x = mlp.X[1500:1540]
    body = {"id": "same", "inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(x.shape),
                                      "data": x.ravel().tolist()}]}
    reference = _call(served["mlflow"], "POST", "/v2/models/digits/infer", body)
    answer = _call(served[runtime], "POST", "/v2/models/digits/infer", body)
    assert reference.status_code == answer.status_code == 200, answer.text
    ref, got = reference.json(), answer.json()
    assert [(o["name"], o["datatype"], o["shape"]) for o in got["outputs"]] == \
        [(o["name"], o["datatype"], o["shape"]) for o in ref["outputs"]] == [("output-0", "FP32", [40, 10])]
    assert got["id"] == ref["id"] == "same"
    # the compiled model's float32 arithmetic: the gate's tolerance, not bit equality
    np.testing.assert_allclose(got["outputs"][0]["data"], ref["outputs"][0]["data"], rtol=1e-3, atol=1e-3)
    v1 = {"instances": x[:3].tolist()}
    v1_ref = _call(served["mlflow"], "POST", "/v1/models/digits:predict", v1).json()
    v1_got = _call(served[runtime], "POST", "/v1/models/digits:predict", v1).json()
    np.testing.assert_allclose(v1_got["predictions"], v1_ref["predictions"], rtol=1e-3, atol=1e-3)
    # and the same refusals, in the same words
    bad = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}
    assert _call(served[runtime], "POST", "/v2/models/digits/infer", bad).json() == \
        _call(served["mlflow"], "POST", "/v2/models/digits/infer", bad).json()


def test_tensorrt_serves_the_same_interface(served: dict[str, ChimlModel], mlp: Digits, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT cannot run without a GPU: its library is replaced at the boundary by ONNX Runtime
    executing the same model file, and the TensorRT model class does the rest (interface mapping)."""
    from chiml_serving.runtimes import tensorrt
    from chiml_serving.runtimes.onnxruntime import OnnxRuntimeEngine

    directory = compile_artifact(mlp.model_dir, "tensorrt", tmp_path, mlp.X[:200], flavor="pytorch")
    monkeypatch.setattr(tensorrt.TensorRTEngine, "load", OnnxRuntimeEngine.load)
    monkeypatch.setattr(tensorrt.TensorRTEngine, "run", OnnxRuntimeEngine.run)
    model = runtime_class("tensorrt")("digits", directory)
    model.load()
    assert isinstance(model, tensorrt.TensorRTModel) and model.batchable
    x = mlp.X[:8]
    body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [8, 64], "data": x.tolist()}]}
    answer = _call(model, "POST", "/v2/models/digits/infer", body).json()
    reference = _call(served["onnxruntime"], "POST", "/v2/models/digits/infer", body).json()
    assert answer["outputs"] == reference["outputs"]
    assert _call(model, "GET", "/v2/models/digits").json()["inputs"][0]["name"] == "input-0"


def test_sklearn_classifier_labels_map_onto_its_signature(digits: Digits, tmp_path: Path) -> None:
    """ONNX ``label`` (+ ``probabilities``) answers the signature's ``output-0`` INT64 labels."""
    directory = compile_artifact(digits.model_dir, "onnxruntime", tmp_path, digits.X[:200])
    model = runtime_class("onnxruntime")("digits", directory)
    model.load()
    reference = runtime_class("mlflow")("digits", digits.model_dir)
    reference.load()
    assert model.get_output_types() == reference.get_output_types() == [
        {"name": "output-0", "datatype": "INT64", "shape": [-1]}]
    x = digits.X[600:700]
    body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    got = _call(model, "POST", "/v2/models/digits/infer", body).json()["outputs"][0]
    ref = _call(reference, "POST", "/v2/models/digits/infer", body).json()["outputs"][0]
    assert (got["name"], got["datatype"], got["shape"]) == (ref["name"], ref["datatype"], ref["shape"])
    # float32 inside the compiled model: a label may differ on a near-tie, never in bulk
    assert np.mean(np.asarray(got["data"]) == np.asarray(ref["data"])) >= 0.97


def test_an_artifact_without_an_interface_serves_its_own_tensors(digits: Digits, tmp_path: Path) -> None:
    """Format-1 artifacts (built before the interface was recorded) keep working as they did."""
    from chiml_contract.artifact import RuntimeSpec

    directory = compile_artifact(digits.model_dir, "onnxruntime", tmp_path, digits.X[:200])
    spec = RuntimeSpec.read(directory)
    spec.interface = None
    spec.write(directory)
    model = runtime_class("onnxruntime")("digits", directory)
    model.load()
    assert [spec.name for spec in model.inputs] == ["input"]
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}
    response = _call(model, "POST", "/v2/models/digits/infer", body)
    assert response.status_code == 200 and {o["name"] for o in response.json()["outputs"]} == {"label",
                                                                                                  "probabilities"}
