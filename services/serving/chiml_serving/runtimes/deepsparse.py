"""DeepSparse on CPU (end-of-life; evaluation licence). Runs only inside the isolated
environment chiml creates (CHIML_HOME/envs/deepsparse): its numpy<2 / onnx<1.15 pins must
never reach the platform's environment.

DeepSparse compiles for a fixed batch size, so the engine keeps one compiled engine per batch
size it has seen (bounded); the first request at a new size pays the (small) compile.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from chiml_serving.runtimes.engine import Engine, require
from chiml_serving.runtimes.model import EngineModel

MAX_ENGINES = 8


class DeepSparseEngine(Engine):
    runtime = "deepsparse"

    def load(self) -> None:
        self._ds = require("deepsparse", self.runtime,
                           "it lives in its own environment: `chiml optimize ... --target deepsparse` creates it")
        self.engines: OrderedDict[int, Any] = OrderedDict()
        self._engine(1)  # compile once now so a bad model fails at load, not at the first request

    def _engine(self, batch: int) -> Any:
        engine = self.engines.get(batch)
        if engine is None:
            if len(self.engines) >= MAX_ENGINES:
                self.engines.popitem(last=False)
            kwargs: dict[str, Any] = {"batch_size": batch}
            if self.threads:
                kwargs["num_cores"] = self.threads
            engine = self._ds.Engine(str(self.model_path), **kwargs)
            self.engines[batch] = engine
        else:
            self.engines.move_to_end(batch)
        return engine

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = int(next(iter(feeds.values())).shape[0])
        outputs = self._engine(batch).run([feeds[name] for name in self.input_names], val_inp=False)
        return dict(zip(self.output_names, outputs, strict=True))


class DeepSparseModel(EngineModel):
    """Serves a chiml compiled artifact with deepsparse."""

    runtime = "deepsparse"
    engine_class = DeepSparseEngine
    any_batch_size = False
