"""What can be checked of the TensorRT path without TensorRT: shape profiles, engine-cache keys,
the Triton model repository layout, and the lazy import's message. (No GPU is lent to these
tests; TensorRT cannot be installed on CPU machines.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from chiml.optimize.triton import config_pbtxt, write_repository
from chiml_contract.artifact import RuntimeSpec
from chiml_contract.tensors import TensorSpec
from chiml_serving.runtimes.tensorrt import engine_cache_key, shape_profile

SPEC = RuntimeSpec(runtime="tensorrt", inputs=[TensorSpec("input", "FP32", (-1, 64))],
                   outputs=[TensorSpec("output", "FP32", (-1, 10))], task="classifier")
PROFILE = shape_profile(SPEC)


def test_shape_profile_spans_the_batch_axis_only() -> None:
    assert PROFILE == {"input": [[1, 64], [8, 64], [64, 64]]}
    dynamic = RuntimeSpec(runtime="tensorrt", inputs=[TensorSpec("x", "FP32", (-1, -1))], outputs=[])
    with pytest.raises(ValueError, match="dynamic non-batch"):
        shape_profile(dynamic)


def test_engine_cache_key_changes_with_everything_an_engine_depends_on() -> None:
    base = engine_cache_key(b"model", "10.8.0", "9.0", "fp16", PROFILE)
    assert base == engine_cache_key(b"model", "10.8.0", "9.0", "fp16", PROFILE)  # stable
    variants = {
        engine_cache_key(b"model2", "10.8.0", "9.0", "fp16", PROFILE),
        engine_cache_key(b"model", "11.0.0", "9.0", "fp16", PROFILE),
        engine_cache_key(b"model", "10.8.0", "8.6", "fp16", PROFILE),
        engine_cache_key(b"model", "10.8.0", "9.0", "strongly-typed", PROFILE),
        engine_cache_key(b"model", "10.8.0", "9.0", "fp16", shape_profile(SPEC, (1, 16, 128))),
    }
    assert base not in variants and len(variants) == 5


def test_triton_config_for_a_batched_tensorrt_plan() -> None:
    text = config_pbtxt("digits", SPEC, max_batch_size=64)
    assert text.startswith('name: "digits"\nplatform: "tensorrt_plan"\nmax_batch_size: 64\n')
    assert 'name: "input"\n    data_type: TYPE_FP32\n    dims: [ 64 ]' in text  # batch axis left to Triton
    assert 'name: "output"\n    data_type: TYPE_FP32\n    dims: [ 10 ]' in text
    assert "kind: KIND_GPU" in text
    assert "preferred_batch_size: [ 8, 64 ]" in text
    unbatched = config_pbtxt("digits", SPEC, max_batch_size=0)
    assert "dims: [ -1, 64 ]" in unbatched and "dynamic_batching" not in unbatched
    with pytest.raises(ValueError, match="may only hold"):
        config_pbtxt("bad name", SPEC)
    odd = RuntimeSpec(runtime="tensorrt", inputs=[TensorSpec("s", "BYTES", (-1,))], outputs=[])
    with pytest.raises(ValueError, match="no Triton type"):
        config_pbtxt("m", odd)


def test_triton_repository_layout(tmp_path: Path) -> None:
    model_dir = write_repository(tmp_path / "repo", "digits", SPEC, plan=b"PLAN")
    assert model_dir == tmp_path / "repo" / "digits"
    assert (model_dir / "config.pbtxt").read_text() == config_pbtxt("digits", SPEC)
    assert (model_dir / "1" / "model.plan").read_bytes() == b"PLAN"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_without_tensorrt_the_engine_says_what_is_missing(tmp_path: Path) -> None:
    from chiml_serving.runtimes.engine import RuntimeUnavailable
    from chiml_serving.runtimes.tensorrt import TensorRTEngine

    SPEC.write(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(RuntimeUnavailable, match="tensorrt is not installed in this environment"):
        TensorRTEngine(tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                    reason="TensorRT is not installed (it needs CUDA and an NVIDIA GPU; none on this machine)")
def test_tensorrt_engine_builds_and_runs(tmp_path: Path) -> None:  # pragma: no cover - GPU nodes only
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    weight = np.random.rand(64, 10).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])],
        [onnx.numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "model.onnx"))
    SPEC.write(tmp_path)
    from chiml_serving.runtimes.tensorrt import TensorRTEngine

    engine = TensorRTEngine(tmp_path, options={"precision": "fp32"})
    x = np.random.rand(8, 64).astype(np.float32)
    np.testing.assert_allclose(engine.infer({"input": x})["output"], x @ weight, rtol=1e-2, atol=1e-2)
    assert list((tmp_path / "engines").glob("*.plan"))
