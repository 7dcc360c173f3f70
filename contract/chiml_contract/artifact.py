"""``chiml-runtime.json``: the layout of a compiled artifact directory.

``chiml optimize`` writes the directory (the compiled model file, ``model.onnx`` by default, and
this spec beside it); every compiled runtime reads it, so the serving side needs nothing from
MLflow. Besides the compiled model's own tensors (``inputs``/``outputs``), the spec records
the *interface* the endpoint serves, taken from the MLflow signature of the model it was
compiled from (:mod:`chiml_contract.signature`). The runtime maps it onto the compiled tensors
by position: interface input *i* feeds compiled input *i* (in ``columns`` mode the interface's
column tensors are stacked into compiled input 0), compiled output *i* answers interface
output *i*; datatypes are cast and a trailing axis of one is dropped when the interface says so.

Format 1 (no interface) is still read: its endpoint serves the compiled tensors as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chiml_contract.signature import Interface
from chiml_contract.tensors import TensorSpec

SPEC_FILE = "chiml-runtime.json"
SPEC_FORMAT = 2
#: the compiled model file when the spec does not name another
MODEL_FILE = "model.onnx"
#: an MLflow model directory holds this file (the pyfunc runtime's artifact)
MLMODEL_FILE = "MLmodel"


def interface_to_json(interface: Interface) -> dict[str, Any]:
    return {
        "mode": interface.mode,
        "inputs": [spec.to_metadata() for spec in interface.inputs],
        "outputs": None if interface.outputs is None else [spec.to_metadata() for spec in interface.outputs],
        "columns": [list(column) for column in interface.columns],
    }


def interface_from_json(data: Mapping[str, Any]) -> Interface:
    outputs = data.get("outputs")
    return Interface(
        inputs=[TensorSpec.from_json(item) for item in data["inputs"]],
        outputs=None if outputs is None else [TensorSpec.from_json(item) for item in outputs],
        mode=data.get("mode", "tensor"),
        columns=[(str(name), str(datatype)) for name, datatype in data.get("columns", [])],
    )


@dataclass
class RuntimeSpec:
    """The contents of ``chiml-runtime.json``."""

    runtime: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    model_file: str = MODEL_FILE
    variant: str | None = None
    task: str = "other"  # classifier | regressor | other: the gate compares top-1 for classifiers
    options: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    #: what the endpoint serves (from the source model's MLflow signature); None: the compiled tensors
    interface: Interface | None = None
    format: int = SPEC_FORMAT

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format, "runtime": self.runtime, "variant": self.variant, "task": self.task,
            "model_file": self.model_file, "options": self.options, "source": self.source,
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": [spec.to_json() for spec in self.outputs],
            "interface": None if self.interface is None else interface_to_json(self.interface),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RuntimeSpec:
        version = int(data.get("format", 1))
        if version > SPEC_FORMAT:
            raise ValueError(f"{SPEC_FILE} format {version} is newer than this chiml-serving understands")
        interface = data.get("interface")
        return cls(
            runtime=str(data["runtime"]),
            inputs=[TensorSpec.from_json(item) for item in data["inputs"]],
            outputs=[TensorSpec.from_json(item) for item in data["outputs"]],
            model_file=str(data.get("model_file", MODEL_FILE)),
            variant=data.get("variant"),
            task=str(data.get("task", "other")),
            options=dict(data.get("options") or {}),
            source=dict(data.get("source") or {}),
            interface=None if interface is None else interface_from_json(interface),
            format=SPEC_FORMAT,
        )

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

    def served(self) -> Interface:
        """The interface the endpoint serves: the recorded one, else the compiled tensors."""
        if self.interface is not None:
            return self.interface
        return Interface(list(self.inputs), list(self.outputs), "tensor")
