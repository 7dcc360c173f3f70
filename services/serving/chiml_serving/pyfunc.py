"""The MLflow runtime: any logged MLflow model, served through its pyfunc flavor.

The model directory is a downloaded MLflow model (``MLmodel`` + artifacts); it is loaded with
``mlflow.pyfunc.load_model`` so the endpoint never talks to a tracking server.

The MLflow signature becomes the V2 interface by the rules of
:mod:`chiml_contract.signature` (shared with the compiled runtimes, so every runtime of the
same model takes the same request). Outputs come from the output schema, else from one probe
call at load time with a zero batch of one row, else ``output-0`` FP32 ``[-1]``.
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

from chiml_contract.signature import Interface, interface_from_signature
from chiml_serving.base import ChimlModel, TensorSpec, datatype_of, numpy_dtype

log = logging.getLogger(__name__)

#: pyfunc loader modules whose predict treats rows independently (see ChimlModel.batchable)
ROW_INDEPENDENT_LOADERS = frozenset({"mlflow.sklearn"})


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
        metadata = self._pyfunc.metadata
        interface = self._interface(metadata.get_input_schema(), metadata.get_output_schema())
        self.inputs = list(interface.inputs)
        self.outputs = list(interface.outputs) if interface.outputs is not None else self._probe_outputs()
        # scikit-learn's predict is row by row; other flavors (custom python models, torch
        # modules in train mode...) may look at the whole batch, so they are never merged.
        self.batchable = _loader_module(path) in ROW_INDEPENDENT_LOADERS and all(
            spec.shape[:1] == (-1,) for spec in (*self.inputs, *self.outputs)
        )

    # ------------------------------------------------------------------ signature -> specs
    def _interface(self, input_schema: Any, output_schema: Any) -> Interface:
        inputs = input_schema.to_dict() if input_schema is not None and input_schema.inputs else None
        outputs = output_schema.to_dict() if output_schema is not None and output_schema.inputs else None
        interface = interface_from_signature(inputs, outputs)
        self._mode = interface.mode
        self._columns = [(name, _column_numpy(datatype)) for name, datatype in interface.columns]
        return interface

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


def _flavors(path: Path) -> dict[str, Any]:
    import yaml

    try:
        flavors = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8")).get("flavors", {})
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    return flavors if isinstance(flavors, dict) else {}


def _loader_module(path: Path) -> str | None:
    return (_flavors(path).get("python_function") or {}).get("loader_module")


@contextmanager
def _without_torch_if_unneeded(path: Path) -> Iterator[None]:
    """Keep torch out of scikit-learn endpoints (about 300 MB of RSS and seconds of start-up).

    Loading a skops-format scikit-learn model makes skops list every scikit-learn estimator,
    and that walk imports ``sklearn.externals.array_api_compat.torch``, hence torch itself,
    although the model never uses it. For exactly that case (sklearn flavor, skops format)
    torch is made unimportable during the load; the walk skips modules that fail to import.
    """
    flavors = _flavors(path)
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


def _column_numpy(datatype: str) -> np.dtype[Any]:
    """The dtype a DataFrame column of this V2 datatype gets (strings and binary stay objects)."""
    return np.dtype(object) if datatype == "BYTES" else numpy_dtype(datatype)
