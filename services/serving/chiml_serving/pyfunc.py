"""The MLflow runtime: any logged MLflow model, served through its pyfunc flavor.

The model directory is a downloaded MLflow model (``MLmodel`` + artifacts); it is loaded with
``mlflow.pyfunc.load_model`` so the endpoint never talks to a tracking server.

How the MLflow signature becomes V2 metadata:

* tensor-based signature: one V2 input per tensor, same dtype and shape (an unnamed tensor is
  called ``input-0``, ``input-1``...);
* column-based (pandas) signature whose columns are all numeric: ONE input ``input-0`` of
  datatype FP32 and shape ``[-1, n_columns]``; each row becomes a DataFrame row, each column
  cast to its signature type (so a ``double`` column gets float64 again);
* column-based with non-numeric columns: one input per column, named like the column, shape
  ``[-1]``, with the column's datatype (BYTES for strings);
* no signature: ``input-0``, FP32, ``[-1, -1]`` (the model gets the array as sent).

Outputs come from the output schema, else from one probe call at load time with a zero batch
of one row, else ``output-0`` FP32 ``[-1]``.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from chiml_serving.base import ChimlModel, TensorSpec, datatype_of, numpy_dtype

log = logging.getLogger(__name__)

_NUMERIC_KINDS = "biuf"


class PyFuncModel(ChimlModel):
    """Serves an MLflow model through ``mlflow.pyfunc``."""

    runtime: ClassVar[str] = "mlflow"
    # A pyfunc model usually pickles, but not always (custom flavors with sessions): reload it.
    transient: ClassVar[tuple[str, ...]] = ("_pyfunc",)

    def __init__(self, name: str, model_dir: str | Path) -> None:
        super().__init__(name, model_dir)
        self._pyfunc: Any = None
        self._mode = "tensor"  # tensor | columns-matrix | columns | raw
        self._columns: list[tuple[str, np.dtype[Any]]] = []

    def load_artifact(self, path: Path) -> None:
        import mlflow.pyfunc  # heavy: imported only where the model is served

        if not (path / "MLmodel").is_file():
            raise FileNotFoundError(f"{path} is not an MLflow model directory (no MLmodel file)")
        with _without_torch_if_unneeded(path):
            self._pyfunc = mlflow.pyfunc.load_model(str(path))
        schema = self._pyfunc.metadata.get_input_schema()
        self.inputs = self._input_specs(schema)
        output_schema = self._pyfunc.metadata.get_output_schema()
        self.outputs = self._output_specs(output_schema) if output_schema is not None else self._probe_outputs()

    # ------------------------------------------------------------------ signature -> specs
    def _input_specs(self, schema: Any) -> list[TensorSpec]:
        if schema is None or not schema.inputs:
            self._mode = "raw"
            return [TensorSpec("input-0", "FP32", (-1, -1))]
        if schema.is_tensor_spec():
            self._mode = "tensor"
            return [
                TensorSpec(spec.name or f"input-{i}", datatype_of(spec.type), tuple(spec.shape))
                for i, spec in enumerate(schema.inputs)
            ]
        names = [str(name) for name in schema.input_names()]
        dtypes = [_column_dtype(spec.type) for spec in schema.inputs]
        self._columns = list(zip(names, dtypes, strict=True))
        if all(dtype.kind in _NUMERIC_KINDS for dtype in dtypes):
            self._mode = "columns-matrix"
            return [TensorSpec("input-0", "FP32", (-1, len(names)))]
        self._mode = "columns"
        return [TensorSpec(name, datatype_of(dtype), (-1,)) for name, dtype in self._columns]

    def _output_specs(self, schema: Any) -> list[TensorSpec]:
        if schema.is_tensor_spec():
            return [
                TensorSpec(spec.name or f"output-{i}", datatype_of(spec.type), tuple(spec.shape))
                for i, spec in enumerate(schema.inputs)
            ]
        return [
            TensorSpec(
                str(name) if isinstance(name, str) else f"output-{name}", datatype_of(_column_dtype(spec.type)), (-1,)
            )
            for name, spec in zip(schema.input_names(), schema.inputs, strict=True)
        ]

    def _probe_outputs(self) -> list[TensorSpec]:
        """No output schema: run one zero row through the model to learn the outputs."""
        if any(-1 in spec.shape[1:] for spec in self.inputs):  # no way to build a valid row
            return [TensorSpec("output-0", "FP32", (-1,))]
        try:
            arrays = {
                spec.name: np.zeros(tuple(max(dim, 1) for dim in spec.shape), dtype=numpy_dtype(spec.datatype))
                for spec in self.inputs
            }
            results = self.infer(arrays)
        except Exception as err:  # any model error: fall back to a generic description
            log.warning("could not probe the outputs of %s (%s); declaring output-0", self.name, err)
            return [TensorSpec("output-0", "FP32", (-1,))]
        return [
            TensorSpec(name, datatype_of(np.asarray(value).dtype), (-1, *np.asarray(value).shape[1:]))
            for name, value in results.items()
        ]

    # ------------------------------------------------------------------ inference
    def infer(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import pandas as pd

        if self._mode in ("tensor", "raw"):
            # One tensor goes in as the array itself (named or not: pyfunc's schema check accepts
            # that, and flavors like sklearn reject a dict); several go in as a dict.
            model_input: Any = next(iter(arrays.values())) if len(arrays) == 1 else arrays
        elif self._mode == "columns-matrix":
            matrix = arrays["input-0"]
            model_input = pd.DataFrame(
                {name: matrix[:, i].astype(dtype) for i, (name, dtype) in enumerate(self._columns)}
            )
        else:
            model_input = pd.DataFrame({name: arrays[name].astype(dtype) for name, dtype in self._columns})
        return self._outputs_of(self._pyfunc.predict(model_input))

    def _outputs_of(self, prediction: Any) -> dict[str, np.ndarray]:
        import pandas as pd

        names = [spec.name for spec in self.outputs] or ["output-0"]
        if isinstance(prediction, pd.DataFrame):
            if len(prediction.columns) == 1 and len(names) == 1:
                return {names[0]: prediction.iloc[:, 0].to_numpy()}
            return {str(column): prediction[column].to_numpy() for column in prediction.columns}
        if isinstance(prediction, pd.Series):
            return {names[0]: prediction.to_numpy()}
        if isinstance(prediction, dict):
            return {str(key): np.asarray(value) for key, value in prediction.items()}
        return {names[0]: np.asarray(prediction)}


@contextmanager
def _without_torch_if_unneeded(path: Path) -> Iterator[None]:
    """Keep torch out of scikit-learn endpoints (about 300 MB of RSS and seconds of start-up).

    Loading a skops-format scikit-learn model makes skops list every scikit-learn estimator,
    and that walk imports ``sklearn.externals.array_api_compat.torch``, hence torch itself,
    although the model never uses it. For exactly that case (sklearn flavor, skops format)
    torch is made unimportable during the load; the walk skips modules that fail to import.
    """
    import yaml

    try:
        flavors = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8")).get("flavors", {})
    except (OSError, yaml.YAMLError, AttributeError):
        flavors = {}
    sklearn = flavors.get("sklearn") or {}
    loader = (flavors.get("python_function") or {}).get("loader_module")
    if loader != "mlflow.sklearn" or sklearn.get("serialization_format") != "skops" or "torch" in sys.modules:
        yield
        return
    # A finder rather than sys.modules["torch"] = None: scipy/sklearn's array-API helpers look
    # torch up in sys.modules and would choke on None.
    blocker = _BlockTorch()
    sys.meta_path.insert(0, blocker)
    try:
        yield
    finally:
        sys.meta_path.remove(blocker)


class _BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == "torch" or fullname.startswith("torch."):
            raise ImportError(f"{fullname} is not imported while loading a scikit-learn model")
        return None


def _column_dtype(mlflow_type: Any) -> np.dtype[Any]:
    """numpy dtype of an MLflow column type (strings/binary/other become object)."""
    to_numpy = getattr(mlflow_type, "to_numpy", None)
    if to_numpy is None:
        return np.dtype(object)
    dtype = np.dtype(to_numpy())
    return dtype if dtype.kind in "biuf" else np.dtype(object)
