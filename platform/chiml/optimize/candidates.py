"""Which runtimes to try, whether each can run here, and each one's compiled artifact directory."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chiml.errors import ChimlError, InvalidInputError
from chiml.optimize import deepsparse_env
from chiml.optimize.export import ExportResult
from chiml_contract import runtimes
from chiml_contract.artifact import RuntimeSpec
from chiml_contract.signature import Interface, interface_from_signature
from chiml_contract.tensors import TensorSpec

# compiled runtimes that also build a variant (a differently compiled model file, same runtime)
VARIANTS: dict[str, tuple[str, ...]] = {"onnxruntime": ("int8",)}
# candidate name -> (serving runtime, variant): every compiled runtime, each followed by its variants
CANDIDATES: dict[str, tuple[str, str | None]] = {
    candidate: (runtime, variant)
    for runtime in runtimes.names(compiled=True)
    for candidate, variant in ((runtime, None), *((f"{runtime}-{v}", v) for v in VARIANTS.get(runtime, ())))
}
TARGETS = ("auto", *CANDIDATES)


@dataclass
class Candidate:
    name: str
    runtime: str
    variant: str | None = None
    python: str | None = None  # interpreter the worker runs with
    unavailable: str | None = None  # why it cannot be tried here
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def engine(self) -> str:
        engine = runtimes.get(self.runtime).engine
        if engine is None:
            raise ValueError(f"{self.runtime} is not a compiled runtime")
        return engine


def _has_nvidia_gpu() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def _availability(name: str, home: Path, allow_deepsparse: bool, explicit: bool,
                  step: Callable[[str], None] | None) -> tuple[str | None, str | None]:
    """(python, None) when the candidate can run, else (None, reason)."""
    runtime = runtimes.get(CANDIDATES[name][0])
    if runtime.device == "cpu" and not runtime.isolated:
        if importlib.util.find_spec(runtime.library) is None:
            return None, f"{runtime.name} is not installed (pip install chiml[runtimes])"
        return sys.executable, None
    if runtime.isolated:
        if not (allow_deepsparse or explicit):
            return None, ("not considered: end-of-life, evaluation-only licence "
                          "(opt in with --allow-deepsparse or optimize.allow_deepsparse: true)")
        reason = deepsparse_env.unsupported_reason()
        if reason:
            return None, reason
        try:
            return str(deepsparse_env.ensure(home, step)), None
        except ChimlError as err:
            return None, str(err)
    # a GPU runtime: TensorRT
    if importlib.util.find_spec(runtime.library) is None:
        gpu = "" if _has_nvidia_gpu() else "; this machine has no NVIDIA GPU"
        return None, f"TensorRT is not installed (GPU nodes only{gpu})"
    if not _has_nvidia_gpu():
        return None, "no NVIDIA GPU on this machine"
    return sys.executable, None


def names(target: str, int8: bool = False) -> list[str]:
    """The candidates ``target`` asks for, in the order they are tried."""
    if target not in TARGETS:
        raise InvalidInputError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    if target == "auto":
        return [name for name, (_, variant) in CANDIDATES.items() if variant is None or int8]
    return [target, "onnxruntime-int8"] if target == "onnxruntime" and int8 else [target]


def plan(target: str, home: Path, *, allow_deepsparse: bool = False, int8: bool = False,
         step: Callable[[str], None] | None = None) -> list[Candidate]:
    """The candidates ``target`` asks for, each marked available or not (with the reason)."""
    out = []
    for name in names(target, int8):
        runtime, variant = CANDIDATES[name]
        python, reason = _availability(name, home, allow_deepsparse, explicit=target == name, step=step)
        out.append(Candidate(name, runtime, variant, python, reason))
    return out


def served_interface(model_dir: Path) -> Interface | None:
    """The V2 interface the MLflow endpoint of this model serves; None without a signature.

    Recorded in every compiled artifact, so the optimized endpoint takes the same requests
    (tensor names, datatypes, shapes) as the MLflow one.
    """
    from mlflow.models import Model

    signature = Model.load(str(model_dir)).signature
    if signature is None:
        return None
    outputs = signature.outputs.to_dict() if signature.outputs is not None else None
    return interface_from_signature(signature.inputs.to_dict(), outputs)


def build_artifact(candidate: Candidate, exported: ExportResult, dest: Path, source: dict[str, Any],
                   interface: Interface | None = None) -> Path:
    """The directory a runtime loads: its model file plus ``chiml-runtime.json``."""
    directory = dest / candidate.name
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / "model.onnx"
    if candidate.variant == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        try:
            quantize_dynamic(str(exported.path), str(model_path), weight_type=QuantType.QInt8)
        except Exception as err:
            raise ValueError(f"dynamic INT8 quantization failed: {' '.join(str(err).split())[:300]}") from None
    else:
        shutil.copyfile(exported.path, model_path)
    spec = RuntimeSpec(
        runtime=candidate.runtime,
        variant=candidate.variant,
        inputs=[TensorSpec.from_json(item) for item in exported.inputs],
        outputs=[TensorSpec.from_json(item) for item in exported.outputs],
        task=exported.task,
        options=candidate.options,
        source={**source, "opset": exported.opset, "ir_version": exported.ir_version, "exporter": exported.exporter},
        interface=interface,
    )
    spec.write(directory)
    return directory
