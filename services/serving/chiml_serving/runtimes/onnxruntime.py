"""ONNX Runtime on CPU: all graph optimizations on; the INT8 variant is a dynamically
quantized model file served by the same class."""

from __future__ import annotations

from typing import Any

import numpy as np

from chiml_serving.runtimes.engine import Engine, require
from chiml_serving.runtimes.model import EngineModel


class OnnxRuntimeEngine(Engine):
    runtime = "onnxruntime"

    def load(self) -> None:
        ort = require("onnxruntime", self.runtime, "pip install onnxruntime")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            options.intra_op_num_threads = self.threads
        # one request runs at a time per session call: extra inter-op threads only add contention
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if not self.options.get("spin", True):
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        self._outputs = self.output_names

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.session.run(self._outputs, feeds)
        return dict(zip(self._outputs, results, strict=True))

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "variant": self.spec.variant, "threads": self.threads}


class OnnxRuntimeModel(EngineModel):
    """Serves a chiml compiled artifact with onnxruntime."""

    runtime = "onnxruntime"
    engine_class = OnnxRuntimeEngine
