"""OpenVINO on CPU.

Small models spend much of a call in shape inference when the batch axis is dynamic, so the
engine compiles a static-shape model per batch size it sees (bounded cache; past the bound it
falls back to the dynamic model). Requests are synchronous, one at a time, so the LATENCY
hint is the right one: THROUGHPUT only helps with several requests in flight.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from chiml_serving.runtimes.engine import Engine, require
from chiml_serving.runtimes.model import EngineModel

STATIC_SHAPES = 8


class OpenVinoEngine(Engine):
    runtime = "openvino"

    def load(self) -> None:
        ov = require("openvino", self.runtime, "pip install openvino")
        self._ov = ov
        self.core = ov.Core()
        self.model = self.core.read_model(str(self.model_path))
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": str(self.options.get("hint", "LATENCY")).upper(),
            # CPUs with AVX512-BF16/AMX would otherwise silently run in bf16 and fail the gate
            "INFERENCE_PRECISION_HINT": str(self.options.get("precision", "f32")),
        }
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        self.config = config
        self.static = bool(self.options.get("static_shapes", True))
        self.dynamic_request = self.core.compile_model(self.model, "CPU", config).create_infer_request()
        self.requests: OrderedDict[tuple[tuple[int, ...], ...], Any] = OrderedDict()

    def _request(self, feeds: dict[str, np.ndarray]) -> Any:
        if not self.static:
            return self.dynamic_request
        key = tuple(tuple(feeds[name].shape) for name in self.input_names)
        request = self.requests.get(key)
        if request is not None:
            self.requests.move_to_end(key)
            return request
        if len(self.requests) >= STATIC_SHAPES:
            return self.dynamic_request
        model = self.model.clone()
        model.reshape({name: self._ov.PartialShape(list(shape)) for name, shape in zip(self.input_names, key,
                                                                                          strict=True)})
        request = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        self.requests[key] = request
        return request

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = self._request(feeds)
        request.infer(feeds)
        # copy: the request's output buffers are reused by the next call
        return {name: np.array(request.get_tensor(name).data) for name in self.output_names}


class OpenVinoModel(EngineModel):
    """Serves a chiml compiled artifact with openvino."""

    runtime = "openvino"
    engine_class = OpenVinoEngine
