"""The serving side of a compiled runtime: a :class:`ChimlModel` wrapping an :class:`Engine`.

The endpoint serves the interface recorded in ``chiml-runtime.json`` (the source model's MLflow
signature, :mod:`chiml_contract.artifact`), so a client of the MLflow endpoint of a model sends
the same request to its ONNX Runtime, OpenVINO, DeepSparse or TensorRT endpoint and gets the
same response: interface inputs are cast to the compiled model's dtypes (the precision the
optimization chose and the correctness gate accepted) and fed by position; compiled outputs
answer the interface's outputs by position, cast back to the declared datatype.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from chiml_contract.signature import Interface
from chiml_serving.base import ChimlModel, numpy_dtype
from chiml_serving.runtimes.engine import Engine


class EngineModel(ChimlModel):
    """Loads ``chiml-runtime.json`` + model file with ``engine_class`` and serves it."""

    engine_class: ClassVar[type[Engine]]
    # runtime sessions/engines cannot be pickled: a model sent to another process reloads them
    transient: ClassVar[tuple[str, ...]] = ("engine",)
    #: the engine takes any batch size cheaply (DeepSparse compiles one engine per size: no)
    any_batch_size: ClassVar[bool] = True

    def __init__(self, name: str, model_dir: str | Path) -> None:
        super().__init__(name, model_dir)
        self.engine: Engine | None = None
        self.variant: str | None = None
        self.interface: Interface | None = None

    def load_artifact(self, path: Path) -> None:
        engine = self.engine_class(path)
        self.engine = engine
        self.variant = engine.spec.variant
        interface = engine.spec.served()
        compiled_in, compiled_out = engine.spec.inputs, engine.spec.outputs
        if interface.mode == "columns":
            if len(compiled_in) != 1:
                raise ValueError(f"{len(interface.inputs)} column inputs cannot feed {len(compiled_in)} model inputs")
        elif len(interface.inputs) != len(compiled_in):
            raise ValueError(f"the interface has {len(interface.inputs)} inputs, the compiled model "
                             f"{len(compiled_in)}: {path}/chiml-runtime.json does not match its model")
        outputs = interface.outputs if interface.outputs is not None else compiled_out
        if len(outputs) > len(compiled_out):
            raise ValueError(f"the interface has {len(outputs)} outputs, the compiled model only {len(compiled_out)}")
        self.interface = interface
        self.inputs = list(interface.inputs)
        self.outputs = list(outputs)
        self.batchable = self.any_batch_size and all(
            item.shape[:1] == (-1,) for item in (*compiled_in, *compiled_out, *self.inputs, *self.outputs)
        )

    def infer(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        if self.engine is None or self.interface is None:
            raise RuntimeError(f"{self.runtime} model {self.name!r} is not loaded")
        compiled = self.engine.spec
        if self.interface.mode == "columns":
            columns = [np.asarray(arrays[spec.name], dtype=compiled.inputs[0].numpy_dtype) for spec in self.inputs]
            feeds = {compiled.inputs[0].name: np.stack(columns, axis=1)}
        else:
            feeds = {item.name: arrays[spec.name] for spec, item in zip(self.inputs, compiled.inputs, strict=True)}
        results = self.engine.infer(feeds)
        answers: dict[str, Any] = {}
        for spec, item in zip(self.outputs, compiled.outputs, strict=False):
            answers[spec.name] = _conform(np.asarray(results[item.name]), spec.shape, spec.datatype)
        return answers


def _conform(array: np.ndarray, shape: tuple[int, ...], datatype: str) -> np.ndarray:
    """The compiled output in the interface's datatype, without the trailing axes of one it lacks."""
    if array.ndim > len(shape) and all(dim == 1 for dim in array.shape[len(shape):]) and shape:
        fixed = shape[1:]
        if -1 not in fixed and math.prod(array.shape[1:]) == math.prod(fixed or (1,)):
            array = array.reshape(array.shape[0], *fixed)
    if datatype != "BYTES":
        array = array.astype(numpy_dtype(datatype), copy=False)
    return array
