"""The serving side of a compiled runtime: a :class:`ChimlModel` wrapping an :class:`Engine`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from chiml_serving.base import ChimlModel, TensorSpec, datatype_of
from chiml_serving.runtimes.engine import Engine


class EngineModel(ChimlModel):
    """Loads ``chiml-runtime.json`` + model file with ``engine_class`` and serves it."""

    engine_class: ClassVar[type[Engine]]
    # runtime sessions/engines cannot be pickled: kserve's --workers rebuilds them per process
    transient: ClassVar[tuple[str, ...]] = ("engine",)

    def __init__(self, name: str, model_dir: str | Path) -> None:
        super().__init__(name, model_dir)
        self.engine: Engine | None = None
        self.variant: str | None = None

    def load_artifact(self, path: Path) -> None:
        engine = self.engine_class(path)
        self.engine = engine
        self.variant = engine.spec.variant
        self.inputs = [TensorSpec(item.name, datatype_of(item.numpy_dtype), tuple(item.shape))
                       for item in engine.spec.inputs]
        self.outputs = [TensorSpec(item.name, datatype_of(item.numpy_dtype), tuple(item.shape))
                        for item in engine.spec.outputs]

    def infer(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        if self.engine is None:
            raise RuntimeError(f"{self.runtime} model {self.name!r} is not loaded")
        return self.engine.infer(arrays)
