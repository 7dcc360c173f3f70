"""How an MLflow model signature becomes the V2 interface a chiml endpoint serves.

Every runtime serves this interface, whatever it runs inside: the MLflow (pyfunc) runtime
computes it from the loaded model's signature, and ``chiml optimize`` records it in the
compiled artifact (``chiml-runtime.json``) so the ONNX Runtime, OpenVINO, DeepSparse and
TensorRT endpoints of the same model take the same request and give the same response.

The rules (the input schema is given as MLflow's JSON form, ``Schema.to_dict()``):

* tensor-based signature: one V2 input per tensor, same dtype and shape; an unnamed tensor is
  called ``input-0``, ``input-1``...;
* column-based signature whose columns are all numeric: ONE input ``input-0`` of datatype FP32
  and shape ``[-1, n_columns]``; each row is one DataFrame row (mode ``columns-matrix``);
* column-based with non-numeric columns: one input per column, named like the column, shape
  ``[-1]``, with the column's datatype (BYTES for strings) (mode ``columns``);
* no signature: ``input-0``, FP32, ``[-1, -1]`` (mode ``raw``).

Outputs follow the same naming (``output-0``...); a model logged without an output schema
has ``outputs = None`` here and the runtime decides (the pyfunc runtime probes the model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chiml_contract.datatypes import MLFLOW_COLUMN_TYPES, from_numpy, get
from chiml_contract.tensors import TensorSpec

Mode = Literal["tensor", "columns-matrix", "columns", "raw"]
NUMERIC_KINDS = "biuf"


@dataclass(frozen=True)
class Interface:
    """The V2 tensors of an endpoint, and how its inputs map onto the model's own input."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec] | None
    mode: Mode = "tensor"
    #: (column name, V2 datatype) of a column-based signature, in order
    columns: list[tuple[str, str]] = field(default_factory=list)


def column_datatype(mlflow_type: str) -> str:
    """V2 datatype of an MLflow column type; complex types (array, object, map) travel as BYTES."""
    return MLFLOW_COLUMN_TYPES.get(str(mlflow_type), "BYTES")


def _is_tensor(items: Sequence[Mapping[str, Any]]) -> bool:
    return bool(items) and all(item.get("type") == "tensor" for item in items)


def _tensor_specs(items: Sequence[Mapping[str, Any]], prefix: str) -> list[TensorSpec]:
    specs = []
    for index, item in enumerate(items):
        tensor = item.get("tensor-spec") or {}
        specs.append(TensorSpec(str(item.get("name") or f"{prefix}-{index}"), from_numpy(str(tensor["dtype"])),
                                tuple(tensor.get("shape") or (-1,))))
    return specs


def interface_from_signature(inputs: Sequence[Mapping[str, Any]] | None,
                             outputs: Sequence[Mapping[str, Any]] | None = None) -> Interface:
    """The V2 interface of a model with this MLflow input (and output) schema."""
    served_outputs = output_specs(outputs) if outputs else None
    if not inputs:
        return Interface([TensorSpec("input-0", "FP32", (-1, -1))], served_outputs, "raw")
    if _is_tensor(inputs):
        return Interface(_tensor_specs(inputs, "input"), served_outputs, "tensor")
    columns = [(str(item.get("name", index)), column_datatype(str(item.get("type")))) for index, item in
               enumerate(inputs)]
    if all(get(datatype).kind in NUMERIC_KINDS for _, datatype in columns):
        return Interface([TensorSpec("input-0", "FP32", (-1, len(columns)))], served_outputs, "columns-matrix",
                         columns)
    return Interface([TensorSpec(name, datatype, (-1,)) for name, datatype in columns], served_outputs, "columns",
                     columns)


def output_specs(outputs: Sequence[Mapping[str, Any]]) -> list[TensorSpec]:
    """The V2 outputs of an MLflow output schema."""
    if _is_tensor(outputs):
        return _tensor_specs(outputs, "output")
    return [TensorSpec(str(item["name"]) if isinstance(item.get("name"), str) else f"output-{index}",
                       column_datatype(str(item.get("type"))), (-1,)) for index, item in enumerate(outputs)]
