"""The runtime-neutral core every compiled runtime implements (no kserve, no HTTP).

An :class:`Engine` loads a compiled artifact directory (``chiml-runtime.json`` + the model
file) and runs named numpy arrays. The serving classes wrap one; the benchmark worker drives
one directly, so what is measured is exactly what is served.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from chiml_contract.artifact import RuntimeSpec

THREADS_ENV = "CHIML_RUNTIME_THREADS"


def default_threads() -> int | None:
    """Intra-op threads: ``CHIML_RUNTIME_THREADS`` if set, else the runtime's own default."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value else None


class RuntimeUnavailable(RuntimeError):
    """The runtime's library (or device) is not present in this environment."""


class Engine(ABC):
    """Load once, then ``run(feeds) -> {output name: array}``."""

    runtime: str = ""

    def __init__(self, model_dir: str | os.PathLike[str], threads: int | None = None,
                 options: dict[str, Any] | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.spec = RuntimeSpec.read(self.model_dir)
        self.threads = threads if threads is not None else default_threads()
        self.options: dict[str, Any] = {**self.spec.options, **(options or {})}
        self.model_path = self.spec.model_path(self.model_dir)
        self.load()

    @property
    def input_names(self) -> list[str]:
        return [item.name for item in self.spec.inputs]

    @property
    def output_names(self) -> list[str]:
        return [item.name for item in self.spec.outputs]

    @abstractmethod
    def load(self) -> None:
        """Compile/load the model (called once by the constructor)."""

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run already-validated feeds (names and dtypes as in the spec)."""

    def infer(self, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
        """Validate/cast request arrays, then run."""
        return self.run(coerce_inputs(self.spec, arrays))


def coerce_inputs(spec: RuntimeSpec, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    """Name, cast and shape-check arrays against the compiled tensors (a clear error, not a runtime crash).

    Lenient on purpose (the benchmark worker and the gate feed it held-out samples): a single
    array under another name is the model's single input, and one sample without its batch
    axis gets one.
    """
    missing = [item.name for item in spec.inputs if item.name not in arrays]
    if missing and len(spec.inputs) == 1 and len(arrays) == 1:
        arrays = {spec.inputs[0].name: next(iter(arrays.values()))}
        missing = []
    if missing:
        raise ValueError(f"missing input(s) {', '.join(missing)}; the model takes {[i.name for i in spec.inputs]}")
    feeds: dict[str, np.ndarray] = {}
    for item in spec.inputs:
        array = np.ascontiguousarray(np.asarray(arrays[item.name], dtype=item.numpy_dtype))
        expected = list(item.shape)
        if len(expected) == array.ndim + 1 and array.ndim >= 1:
            array = array[None, ...]
        if not item.shape_matches(array.shape):
            raise ValueError(f"input {item.name!r} has shape {list(array.shape)}, the model expects {expected}")
        feeds[item.name] = array
    return feeds


def require(module: str, runtime: str, hint: str) -> Any:
    """Import a runtime library lazily, turning ImportError into a clear RuntimeUnavailable."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise RuntimeUnavailable(f"{runtime} is not installed in this environment ({err}); {hint}") from None
