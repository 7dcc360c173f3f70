"""`chiml-runtime.json`: what a compiled artifact directory holds and how to feed it.

The platform writes it next to the compiled model (``model.onnx``) when it optimizes a model;
every runtime reads it, so the serving side needs nothing from MLflow. Standard library and
numpy only: this module is imported inside the DeepSparse environment too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPEC_FILE = "chiml-runtime.json"
SPEC_FORMAT = 1


@dataclass
class TensorSpec:
    """One named input or output; ``-1`` marks a dynamic dimension (the batch axis)."""

    name: str
    dtype: str
    shape: list[int]

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


@dataclass
class RuntimeSpec:
    """The contents of ``chiml-runtime.json``."""

    runtime: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    model_file: str = "model.onnx"
    variant: str | None = None
    task: str = "other"  # classifier | regressor | other: the gate compares top-1 for classifiers
    options: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    format: int = SPEC_FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuntimeSpec:
        if data.get("format", SPEC_FORMAT) > SPEC_FORMAT:
            raise ValueError(f"{SPEC_FILE} format {data['format']} is newer than this chiml-serving understands")
        data = dict(data)
        data["inputs"] = [TensorSpec(**item) for item in data["inputs"]]
        data["outputs"] = [TensorSpec(**item) for item in data["outputs"]]
        return cls(**data)

    def write(self, directory: Path) -> Path:
        path = Path(directory) / SPEC_FILE
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True), encoding="utf-8")
        return path

    @classmethod
    def read(cls, directory: Path) -> RuntimeSpec:
        path = Path(directory) / SPEC_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a chiml compiled-model directory")
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def model_path(self, directory: Path) -> Path:
        return Path(directory) / self.model_file


def coerce_inputs(spec: RuntimeSpec, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    """Name, cast and shape-check request arrays against the spec (a clear error, not a runtime crash)."""
    missing = [item.name for item in spec.inputs if item.name not in arrays]
    if missing and len(spec.inputs) == 1 and len(arrays) == 1:
        # a single unnamed/otherwise-named tensor is the model's single input
        arrays = {spec.inputs[0].name: next(iter(arrays.values()))}
        missing = []
    if missing:
        raise ValueError(f"missing input(s) {', '.join(missing)}; the model takes {[i.name for i in spec.inputs]}")
    feeds: dict[str, np.ndarray] = {}
    for item in spec.inputs:
        array = np.ascontiguousarray(np.asarray(arrays[item.name], dtype=item.numpy_dtype))
        expected = item.shape
        if len(expected) == array.ndim + 1 and array.ndim >= 1:
            array = array[None, ...]  # one sample without its batch axis
        if array.ndim != len(expected) or any(e not in (-1, a) for e, a in zip(expected, array.shape, strict=True)):
            raise ValueError(f"input {item.name!r} has shape {list(array.shape)}, the model expects {expected}")
        feeds[item.name] = array
    return feeds
