"""TensorRT on NVIDIA GPUs: an engine built from the ONNX artifact, run with ``execute_async_v3``.

TensorRT (and cuda-python for device memory) are imported lazily: neither installs on a
machine without CUDA, and everything that does not need them (the engine-cache key, the
optimization profile) works anywhere. TensorRT 10 has the FP16 builder flag; TensorRT 11
dropped the FP16/INT8 flags in favour of strongly typed networks, where the ONNX model's own
dtypes decide the precision, so the builder picks whichever the installed version offers.

An engine only runs on the TensorRT version and GPU architecture it was built for, so the
cache key covers both, plus the model bytes, precision and shape profile.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from chiml_contract.artifact import RuntimeSpec
from chiml_serving.runtimes.engine import Engine, RuntimeUnavailable, require
from chiml_serving.runtimes.model import EngineModel

CACHE_ENV = "CHIML_TRT_CACHE"
DEFAULT_PROFILE = (1, 8, 64)  # min / opt / max batch of the optimization profile


def shape_profile(spec: RuntimeSpec, batches: tuple[int, int, int] = DEFAULT_PROFILE) -> dict[str, list[list[int]]]:
    """min/opt/max shapes per input: the dynamic batch axis spans ``batches``; other dims are fixed."""
    profile: dict[str, list[list[int]]] = {}
    for item in spec.inputs:
        rest = item.shape[1:]
        if any(dim < 0 for dim in rest):
            raise ValueError(f"input {item.name!r} has dynamic non-batch dimensions {item.shape}: "
                             "TensorRT needs them fixed (export with a fixed sample shape)")
        profile[item.name] = [[batch, *rest] for batch in batches]
    return profile


def engine_cache_key(model_bytes: bytes, trt_version: str, compute_capability: str, precision: str,
                     profile: dict[str, list[list[int]]]) -> str:
    """Everything an engine's validity depends on; any change means a rebuild."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(model_bytes).digest())
    digest.update(json.dumps({"trt": trt_version, "sm": compute_capability, "precision": precision,
                              "profile": profile}, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise RuntimeUnavailable("tensorrt needs cuda-python for device memory (pip install cuda-python)") from None
    return cudart


def _check(result: Any) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA call failed with error {err}")
    return rest[0] if len(rest) == 1 else rest


def compute_capability() -> str:
    cudart = _cudart()
    props = _check(cudart.cudaGetDeviceProperties(0))
    return f"{props.major}.{props.minor}"


def build_plan(onnx_path: Path, spec: RuntimeSpec, precision: str = "fp16",
               batches: tuple[int, int, int] = DEFAULT_PROFILE) -> bytes:
    """Build a serialized engine (a Triton ``model.plan``) from the ONNX model."""
    trt = require("tensorrt", "tensorrt", "install TensorRT matching your CUDA and GPU (GPU nodes only)")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    has_precision_flags = hasattr(trt.BuilderFlag, "FP16")  # removed in TensorRT 11
    flags = 0
    if not has_precision_flags or precision == "strongly-typed":
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if has_precision_flags and precision == "fp16" and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shape_profile(spec, batches).items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    return bytes(plan)


class TensorRTEngine(Engine):
    runtime = "tensorrt"

    def load(self) -> None:
        trt = require("tensorrt", self.runtime, "install TensorRT matching your CUDA and GPU (GPU nodes only)")
        self._trt = trt
        self.cudart = _cudart()
        precision = str(self.options.get("precision", "fp16"))
        batches = tuple(self.options.get("profile", DEFAULT_PROFILE))
        model_bytes = self.model_path.read_bytes()
        key = engine_cache_key(model_bytes, trt.__version__, compute_capability(), precision,
                               shape_profile(self.spec, batches))
        cache_dir = Path(os.environ.get(CACHE_ENV) or self.model_dir / "engines")
        plan_path = cache_dir / f"{key}.plan"
        if plan_path.is_file():
            plan = plan_path.read_bytes()
        else:
            plan = build_plan(self.model_path, self.spec, precision, batches)
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = plan_path.with_suffix(".tmp")
            tmp.write_bytes(plan)
            os.replace(tmp, plan_path)
        self.trt_runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.trt_runtime.deserialize_cuda_engine(plan)
        self.context = self.engine.create_execution_context()
        self.stream = _check(self.cudart.cudaStreamCreate())
        self.max_batch = batches[2]
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _device(self, name: str, nbytes: int) -> int:
        pointer, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                _check(self.cudart.cudaFree(pointer))
            pointer = int(_check(self.cudart.cudaMalloc(nbytes)))
            self.buffers[name] = (pointer, nbytes)
        return pointer

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self.cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        batch = int(next(iter(feeds.values())).shape[0])
        if batch > self.max_batch:
            raise ValueError(f"batch {batch} exceeds the engine's profile maximum {self.max_batch}")
        for name, array in feeds.items():
            self.context.set_input_shape(name, array.shape)
            pointer = self._device(name, array.nbytes)
            _check(cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, h2d, self.stream))
            self.context.set_tensor_address(name, pointer)
        outputs: dict[str, np.ndarray] = {}
        for item in self.spec.outputs:
            shape = tuple(self.context.get_tensor_shape(item.name))
            outputs[item.name] = np.empty(shape, dtype=item.numpy_dtype)
            self.context.set_tensor_address(item.name, self._device(item.name, outputs[item.name].nbytes))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execution failed")
        for name, array in outputs.items():
            _check(cudart.cudaMemcpyAsync(array.ctypes.data, self.buffers[name][0], array.nbytes, d2h, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return outputs


class TensorRTModel(EngineModel):
    """Serves a chiml compiled artifact with tensorrt."""

    runtime = "tensorrt"
    engine_class = TensorRTEngine
