"""Export a PyTorch or scikit-learn model to one ONNX file every runtime reads.

Opset 17 with IR version ≤ 9: torch 2.13's dynamo exporter writes IR 10, which DeepSparse's
onnx 1.14 cannot read, while opset 17 needs only IR 8 — so the IR version is lowered when it
is higher than the opset requires. The batch axis is dynamic. The file is validated with
``onnx.checker`` (full check, shape inference included) before anything uses it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chiml.errors import ChimlError, NotSupportedError
from chiml.optimize.source import InputSpec

OPSET = 17
ML_OPSET = 3  # ai.onnx.ml, for scikit-learn converters
MAX_IR_VERSION = 9  # onnx 1.14 (DeepSparse 1.8) reads IR <= 9


@dataclass
class ExportResult:
    path: Path
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    task: str  # classifier | regressor | other
    opset: int
    ir_version: int
    exporter: str


def _dims(value_info: Any) -> list[int]:
    return [dim.dim_value if dim.HasField("dim_value") else -1 for dim in value_info.type.tensor_type.shape.dim]


def finalize(path: Path) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    """Lower the IR version if needed, run the checker, and read the I/O signature."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
        onnx.save(model, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as err:  # onnx raises ValidationError / InferenceError
        raise ChimlError(f"the exported ONNX model is invalid: {' '.join(str(err).split())[:400]}") from None

    def describe(items: Any) -> list[dict[str, Any]]:
        return [{"name": item.name,
                 "dtype": np.dtype(helper.tensor_dtype_to_np_dtype(item.type.tensor_type.elem_type)).name,
                 "shape": _dims(item)} for item in items]

    initializers = {init.name for init in model.graph.initializer}
    inputs = [item for item in model.graph.input if item.name not in initializers]
    return model, describe(inputs), describe(model.graph.output)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress and warnings by the screenful; keep the CLI's output readable."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MISSING_OP = (
    re.compile(r"No ONNX function found for <OpOverload\(op='([^']+)'"),  # dynamo exporter
    re.compile(r"Exporting the operator '?([\w:.]+)'? to ONNX opset version \d+ is not supported"),  # TorchScript
)


def describe_export_error(text: str) -> str:
    """The exporters' messages run to pages; name the unsupported operator when there is one."""
    text = " ".join(_ANSI.sub("", text).split())
    for pattern in _MISSING_OP:
        match = pattern.search(text)
        if match:
            return f"unsupported operator {match.group(1)}"
    return text[:300]


def eval_mode(module: Any) -> None:
    """Inference mode; MLflow 3's default pt2 format loads an exported GraphModule, already in eval
    form, whose ``eval()`` raises NotImplementedError."""
    with contextlib.suppress(NotImplementedError):
        module.eval()


def export_torch(model_dir: Path, inputs: list[InputSpec], sample: dict[str, np.ndarray], dest: Path) -> ExportResult:
    import mlflow.pytorch
    import torch

    module = mlflow.pytorch.load_model(str(model_dir), map_location="cpu")
    eval_mode(module)
    args = tuple(torch.from_numpy(sample[spec.name][:2]) for spec in inputs)
    with torch.inference_mode():
        result = module(*args)
    outputs = result if isinstance(result, (tuple, list)) else (result,)
    if not all(isinstance(out, torch.Tensor) for out in outputs):
        raise NotSupportedError("the model's forward() must return a tensor or a tuple of tensors to export to ONNX")
    output_names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    input_names = [spec.name for spec in inputs]
    axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
    path = dest / "model.onnx"

    def torchscript() -> None:
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)

    def dynamo() -> None:
        batch = torch.export.Dim("batch", min=1, max=65536)
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_shapes=tuple({0: batch} for _ in args), opset_version=OPSET, dynamo=True,
                          verbose=False)

    # The TorchScript exporter is fast and writes IR 8 at opset 17, but cannot trace the
    # GraphModule that MLflow 3's default "pt2" format loads; the dynamo exporter takes both.
    order = [("dynamo", dynamo)] if isinstance(module, torch.fx.GraphModule) else [
        ("torchscript", torchscript), ("dynamo", dynamo)]
    errors = []
    used = ""
    for name, run in order:
        try:
            with _quiet():
                run()
            used = name
            break
        except Exception as err:
            errors.append(describe_export_error(str(err)))
    else:
        raise NotSupportedError(f"cannot export the PyTorch model to ONNX (opset {OPSET}): {errors[-1]}",
                                hint="replace the operator, or serve this model with --runtime mlflow")
    model, ins, outs = finalize(path)
    task = "classifier" if len(outs) == 1 and len(outs[0]["shape"]) == 2 and outs[0]["shape"][1] > 1 else "other"
    return ExportResult(path, ins, outs, task, OPSET, model.ir_version, used)


def export_sklearn(model_dir: Path, inputs: list[InputSpec], sample: dict[str, np.ndarray],
                   dest: Path) -> ExportResult:
    import mlflow.sklearn
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier, is_regressor

    if len(inputs) != 1:
        raise NotSupportedError("scikit-learn models take one input matrix")
    estimator = mlflow.sklearn.load_model(str(model_dir))
    features = inputs[0].shape[1] if len(inputs[0].shape) == 2 and inputs[0].shape[1] > 0 else None
    if features is None:
        features = sample[inputs[0].name].shape[1]
    options = {id(estimator): {"zipmap": False}} if is_classifier(estimator) else None
    try:
        onx = convert_sklearn(estimator, initial_types=[(inputs[0].name, FloatTensorType([None, features]))],
                              target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET}, options=options)
    except Exception as err:
        message = " ".join(str(err).split())[:400]
        raise NotSupportedError(
            f"cannot convert the {type(estimator).__name__} to ONNX (skl2onnx): {message}"
        ) from None
    path = dest / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    model, ins, outs = finalize(path)
    task = "classifier" if is_classifier(estimator) else "regressor" if is_regressor(estimator) else "other"
    return ExportResult(path, ins, outs, task, OPSET, model.ir_version, "skl2onnx")


def export(flavor: str, model_dir: Path, inputs: list[InputSpec], sample: dict[str, np.ndarray],
           dest: Path) -> ExportResult:
    dest.mkdir(parents=True, exist_ok=True)
    if flavor == "pytorch":
        return export_torch(model_dir, inputs, sample, dest)
    if flavor == "sklearn":
        return export_sklearn(model_dir, inputs, sample, dest)
    raise NotSupportedError(f"no ONNX exporter for the {flavor} flavor")
