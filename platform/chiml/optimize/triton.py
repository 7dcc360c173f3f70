"""A Triton model repository for KServe's Triton runtime on GPU nodes.

Layout: ``<repo>/<model>/config.pbtxt`` and ``<repo>/<model>/1/model.plan`` (platform
``tensorrt_plan``). With ``max_batch_size > 0`` Triton adds the batch axis itself, so dims
in the config leave it out; dynamic batching lets Triton merge concurrent requests. The plan
must be built with the TensorRT version of the Triton image that serves it, on the same GPU
architecture, so :func:`write_repository` takes the plan bytes from a build on that node
(``chiml_serving.runtimes.tensorrt.build_plan``), or writes the config alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from chiml_contract.artifact import RuntimeSpec
from chiml_contract.tensors import TensorSpec

# numpy dtype name -> Triton data type
TRITON_TYPES: dict[str, str] = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
    "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
}
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _tensor(item: TensorSpec, batched: bool) -> str:
    if item.dtype not in TRITON_TYPES:
        raise ValueError(f"tensor {item.name!r}: dtype {item.dtype} has no Triton type")
    dims = item.shape[1:] if batched else item.shape
    if batched and (not item.shape or item.shape[0] != -1):
        raise ValueError(f"tensor {item.name!r} has no dynamic batch axis: {item.shape}")
    return (f'  {{\n    name: "{item.name}"\n    data_type: {TRITON_TYPES[item.dtype]}\n'
            f"    dims: [ {', '.join(str(d) for d in dims)} ]\n  }}")


def config_pbtxt(name: str, spec: RuntimeSpec, max_batch_size: int = 64, instances: int = 1,
                 preferred_batch_sizes: tuple[int, ...] = (8, 64), queue_delay_us: int = 100) -> str:
    """The ``config.pbtxt`` (protobuf text format) for a TensorRT plan."""
    if not _NAME.match(name):
        raise ValueError(f"Triton model name {name!r} may only hold letters, digits, '.', '_' and '-'")
    batched = max_batch_size > 0
    preferred = [size for size in preferred_batch_sizes if size <= max_batch_size]
    lines = [
        f'name: "{name}"',
        'platform: "tensorrt_plan"',
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(_tensor(item, batched) for item in spec.inputs) + "\n]",
        "output [\n" + ",\n".join(_tensor(item, batched) for item in spec.outputs) + "\n]",
        f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_GPU\n  }}\n]",
    ]
    if batched:
        sizes = f"preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n  " if preferred else ""
        lines.append(f"dynamic_batching {{\n  {sizes}max_queue_delay_microseconds: {queue_delay_us}\n}}")
    return "\n".join(lines) + "\n"


def write_repository(repo: Path, name: str, spec: RuntimeSpec, plan: bytes | None = None,
                     max_batch_size: int = 64, version: int = 1) -> Path:
    """Write ``<repo>/<name>/config.pbtxt`` (and ``<version>/model.plan`` when given); returns the model dir."""
    model_dir = Path(repo) / name
    (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(config_pbtxt(name, spec, max_batch_size), encoding="utf-8")
    if plan is not None:
        (model_dir / str(version) / "model.plan").write_bytes(plan)
    return model_dir
