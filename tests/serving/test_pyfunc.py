"""PyFuncModel in-process: how MLflow signatures become V2 specs, and the request path."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest

from chiml_serving.base import datatype_of
from chiml_serving.pyfunc import PyFuncModel
from chiml_serving.registry import UnknownRuntime, runtime_class
from tests.serving.conftest import Digits


def _request(name: str, array: np.ndarray, datatype: str) -> InferRequest:
    item = InferInput(name=name, shape=list(array.shape), datatype=datatype, data=array.ravel().tolist())
    return InferRequest(model_name="m", infer_inputs=[item])


@pytest.fixture(scope="module")
def iris_frame_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, pd.DataFrame]:
    """A model logged from a DataFrame: a column-based signature (float64 and int64 columns)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    frame = load_iris(as_frame=True).frame
    X = frame.drop(columns="target")
    X["bucket"] = (X["sepal length (cm)"] > 5.5).astype("int64")
    model = LogisticRegression(max_iter=500).fit(X, frame["target"])
    path = tmp_path_factory.mktemp("iris") / "model"
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(X, model.predict(X)), pip_requirements=[])
    return path, model, X


def test_tensor_signature(digits: Digits) -> None:
    model = PyFuncModel("digits", digits.model_dir)
    assert model.load()
    assert model.get_input_types() == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 64]}]
    assert model.get_output_types() == [{"name": "output-0", "datatype": "INT64", "shape": [-1]}]
    response = model.predict(_request("input-0", digits.X[:10], "FP64"))
    np.testing.assert_array_equal(response.outputs[0].data, digits.model.predict(digits.X[:10]))


def test_column_signature_becomes_one_fp32_matrix(iris_frame_model: tuple) -> None:
    path, sk_model, X = iris_frame_model
    model = PyFuncModel("iris", path)
    model.load()
    assert model.get_input_types() == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 5]}]
    rows = X.to_numpy(dtype=np.float32)[:20]
    response = model.predict(_request("input-0", rows, "FP32"))
    expected = sk_model.predict(X.iloc[:20])
    np.testing.assert_array_equal(response.outputs[0].data, expected)
    with pytest.raises(InvalidInput, match=r"shape \[20, 4\] does not match the model's \[-1, 5\]"):
        model.predict(_request("input-0", rows[:, :4], "FP32"))


def test_v1_rows(iris_frame_model: tuple) -> None:
    path, sk_model, X = iris_frame_model
    model = PyFuncModel("iris", path)
    model.load()
    result = model.predict({"instances": X.iloc[:5].to_numpy().tolist()})
    assert result == {"predictions": sk_model.predict(X.iloc[:5]).tolist()}


def test_input_only_signature_probes_outputs(tmp_path: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec
    from sklearn.linear_model import LinearRegression

    X = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    sk_model = LinearRegression().fit(X, X @ np.array([1.0, 2.0, 3.0]))
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3))]))
    mlflow.sklearn.save_model(sk_model, str(tmp_path / "m"), signature=signature, pip_requirements=[])
    model = PyFuncModel("lin", tmp_path / "m")
    model.load()
    assert model.get_input_types() == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 3]}]
    # learned from one probe call: the predictions' real dtype, one value per row
    expected_type = datatype_of(sk_model.predict(X[:1]).dtype)
    assert model.get_output_types() == [{"name": "output-0", "datatype": expected_type, "shape": [-1]}]
    response = model.predict(_request("input-0", X[:4], "FP32"))
    np.testing.assert_allclose(response.outputs[0].data, sk_model.predict(X[:4]))


def test_no_signature(tmp_path: Path) -> None:
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    X = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    sk_model = LinearRegression().fit(X, X @ np.array([1.0, 2.0, 3.0]))
    mlflow.sklearn.save_model(sk_model, str(tmp_path / "m"), pip_requirements=[])
    model = PyFuncModel("lin", tmp_path / "m")
    model.load()
    assert model.get_input_types() == [{"name": "input-0", "datatype": "FP32", "shape": [-1, -1]}]
    assert model.get_output_types() == [{"name": "output-0", "datatype": "FP32", "shape": [-1]}]
    response = model.predict(_request("input-0", X[:4], "FP32"))
    np.testing.assert_allclose(response.outputs[0].data, sk_model.predict(X[:4]))


def test_pickled_model_reloads_in_the_worker(digits: Digits) -> None:
    """What kserve's --workers does: pickle the loaded model, unpickle it in another process."""
    model = PyFuncModel("digits", digits.model_dir)
    model.load()
    copy = pickle.loads(pickle.dumps(model))
    assert copy.ready and copy.inputs == model.inputs
    response = copy.predict(_request("input-0", digits.X[:5], "FP64"))  # waits for the background load
    np.testing.assert_array_equal(response.outputs[0].data, digits.model.predict(digits.X[:5]))


def test_broken_artifact_fails_load(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no MLmodel"):
        PyFuncModel("x", tmp_path).load()


def test_registry() -> None:
    assert runtime_class("mlflow") is PyFuncModel
    with pytest.raises(UnknownRuntime, match="unknown runtime 'nope'"):
        runtime_class("nope")
