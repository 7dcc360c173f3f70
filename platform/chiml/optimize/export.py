"""Export a model to one ONNX file every runtime reads.

PyTorch (torch.onnx), scikit-learn (skl2onnx), Keras 3 (its own ``model.export(format="onnx")``,
tf2onnx underneath), XGBoost and LightGBM (onnxmltools) and CatBoost (its own ONNX writer).

Opset 17 with IR version ≤ 9: torch 2.13's dynamo exporter writes IR 10, which DeepSparse's
onnx 1.14 cannot read, while opset 17 needs only IR 8 — so the IR version is lowered when it
is higher than the opset requires (onnxmltools' tree converters stop at opset 15). The batch
axis is dynamic. The file is validated with ``onnx.checker`` (full check, shape inference
included) before anything uses it.
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
TREES_OPSET = 15  # the newest opset onnxmltools 1.16's XGBoost and LightGBM converters write
TREE_FLAVORS = ("xgboost", "lightgbm", "catboost")


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
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "tf2onnx", "tensorflow", "absl")
    loggers = [logging.getLogger(name) for name in names]
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


def load_original(flavor: str, model_dir: Path) -> Any:
    """The logged model object of a Keras, XGBoost, LightGBM or CatBoost model version, through its
    MLflow flavor (Keras 3 models are logged in the ``tensorflow`` flavor, see chiml.lifecycle.flavors)."""
    if flavor == "tensorflow":
        import mlflow.tensorflow

        return mlflow.tensorflow.load_model(str(model_dir))
    if flavor in TREE_FLAVORS:
        import importlib

        return importlib.import_module(f"mlflow.{flavor}").load_model(str(model_dir))
    raise NotSupportedError(f"no loader for the {flavor} flavor")


def _tree_task(model: Any) -> str:
    """classifier (labels + class probabilities) | regressor, as the baseline runs them."""
    if callable(getattr(model, "predict_proba", None)) and getattr(model, "classes_", None) is not None:
        return "classifier"
    return "regressor" if callable(getattr(model, "predict", None)) else "other"


def _rename_tensor(model: Any, old: str, new: str) -> None:
    """Rename one tensor everywhere in the graph (no node added: some exporters declare no default
    opset, CatBoost's for one, where even an Identity would be invalid)."""
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for item in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        if item.name == old:
            item.name = new


def _rename_io(model: Any, inputs: list[str], outputs: list[str] | None = None) -> None:
    """Give the graph's inputs the signature's names (what the runtimes and the gate feed) and,
    when given, its outputs plain names (exporters write e.g. ``Identity:0``)."""
    initializers = {init.name for init in model.graph.initializer}
    graph_inputs = [item.name for item in model.graph.input if item.name not in initializers]
    if len(graph_inputs) != len(inputs):
        raise NotSupportedError(
            f"the exported model takes {len(graph_inputs)} input(s), the signature has {len(inputs)}")
    pairs = list(zip(graph_inputs, inputs, strict=True))
    if outputs is not None:
        pairs += list(zip([item.name for item in model.graph.output], outputs, strict=True))
    for old, new in pairs:
        if old != new:
            _rename_tensor(model, old, new)


def _dynamic_batch(model: Any) -> None:
    """Every input's and output's first axis symbolic (LightGBM's converter writes ``label: [1]``)."""
    for item in [*model.graph.input, *model.graph.output]:
        dims = item.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = "batch"


def _drop_zipmap(model: Any) -> None:
    """Classifiers' ``ZipMap`` turns the probability matrix into a list of dicts, which no tensor
    runtime returns: output the matrix it reads instead (skl2onnx's ``zipmap=False``)."""
    from onnx import TensorProto, helper

    for node in list(model.graph.node):
        if node.op_type != "ZipMap":
            continue
        matrix, output = node.input[0], node.output[0]
        model.graph.node.remove(node)
        for index, item in enumerate(model.graph.output):
            if item.name == output:
                model.graph.output.remove(item)
                model.graph.output.insert(index, helper.make_tensor_value_info(matrix, TensorProto.FLOAT,
                                                                               ["batch", None]))
                break
        _rename_tensor(model, matrix, output)


def export_keras(model_dir: Path, inputs: list[InputSpec], sample: dict[str, np.ndarray], dest: Path) -> ExportResult:
    """Keras 3 (TensorFlow backend) through Keras' own ONNX export (tf2onnx underneath)."""
    import onnx

    model = load_original("tensorflow", model_dir)
    if not callable(getattr(model, "export", None)) or not hasattr(model, "predict"):
        raise NotSupportedError(f"the tensorflow model is a {type(model).__name__}, not a Keras 3 model: "
                                "chiml optimize exports Keras models", hint="serve it with --runtime mlflow")
    feeds = [sample[spec.name][:2] for spec in inputs]
    with _quiet():
        answer = model.predict(feeds[0] if len(feeds) == 1 else feeds, verbose=0)  # builds a loaded model
    outputs = answer if isinstance(answer, (tuple, list)) else [answer]
    output_names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    path = dest / "model.onnx"
    try:
        with _quiet():
            model.export(str(path), format="onnx", opset_version=OPSET, verbose=False)
    except Exception as err:
        raise NotSupportedError(f"cannot export the Keras model to ONNX (tf2onnx, opset {OPSET}): "
                                f"{describe_export_error(str(err))}", hint="serve it with --runtime mlflow") from None
    onx = onnx.load(str(path))
    _rename_io(onx, [spec.name for spec in inputs], output_names)
    onnx.save(onx, str(path))
    model_proto, ins, outs = finalize(path)
    task = "classifier" if len(outs) == 1 and len(outs[0]["shape"]) == 2 and outs[0]["shape"][1] > 1 else "other"
    return ExportResult(path, ins, outs, task, OPSET, model_proto.ir_version, "keras (tf2onnx)")


def export_trees(flavor: str, model_dir: Path, inputs: list[InputSpec], sample: dict[str, np.ndarray],
                 dest: Path) -> ExportResult:
    """XGBoost and LightGBM through onnxmltools, CatBoost through its own ``save_model(format="onnx")``."""
    import onnx

    if len(inputs) != 1:
        raise NotSupportedError(f"{flavor} models take one input matrix")
    model = load_original(flavor, model_dir)
    features = inputs[0].shape[1] if len(inputs[0].shape) == 2 and inputs[0].shape[1] > 0 else None
    features = features or sample[inputs[0].name].shape[1]
    path = dest / "model.onnx"
    task = _tree_task(model)
    try:
        with _quiet():
            if flavor == "catboost":
                model.save_model(str(path), format="onnx")
                onx, opset, exporter = onnx.load(str(path)), None, "catboost"
            else:
                import onnxmltools
                from onnxmltools.convert.common.data_types import FloatTensorType

                initial = [(inputs[0].name, FloatTensorType([None, features]))]
                if flavor == "xgboost":
                    onx = onnxmltools.convert_xgboost(model, initial_types=initial, target_opset=TREES_OPSET)
                else:
                    onx = onnxmltools.convert_lightgbm(model, initial_types=initial, target_opset=TREES_OPSET,
                                                       zipmap=False)
                opset, exporter = TREES_OPSET, "onnxmltools"
    except Exception as err:
        message = " ".join(str(err).split())[:400]
        raise NotSupportedError(f"cannot convert the {type(model).__name__} to ONNX ({flavor}): {message}",
                                hint="serve it with --runtime mlflow") from None
    _drop_zipmap(onx)
    _rename_io(onx, [inputs[0].name])
    _dynamic_batch(onx)
    onnx.save(onx, str(path))
    model_proto, ins, outs = finalize(path)
    if opset is None:  # CatBoost writes only ai.onnx.ml nodes; report that domain's version
        opset = max((entry.version for entry in model_proto.opset_import), default=0)
    return ExportResult(path, ins, outs, task, opset, model_proto.ir_version, exporter)



def export(flavor: str, model_dir: Path, inputs: list[InputSpec], sample: dict[str, np.ndarray],
           dest: Path) -> ExportResult:
    dest.mkdir(parents=True, exist_ok=True)
    if flavor == "pytorch":
        return export_torch(model_dir, inputs, sample, dest)
    if flavor == "sklearn":
        return export_sklearn(model_dir, inputs, sample, dest)
    if flavor == "tensorflow":
        return export_keras(model_dir, inputs, sample, dest)
    if flavor in TREE_FLAVORS:
        return export_trees(flavor, model_dir, inputs, sample, dest)
    raise NotSupportedError(f"no ONNX exporter for the {flavor} flavor")
