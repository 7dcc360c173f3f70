"""Which runtimes to try, whether each can run here, and each one's compiled artifact directory."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chiml.errors import ChimlError
from chiml.optimize import deepsparse_env
from chiml.optimize.export import ExportResult
from chiml_serving.runtimes import ENGINES
from chiml_serving.runtimes.spec import RuntimeSpec, TensorSpec

# candidate name -> (serving runtime, variant)
CANDIDATES: dict[str, tuple[str, str | None]] = {
    "onnxruntime": ("onnxruntime", None),
    "onnxruntime-int8": ("onnxruntime", "int8"),
    "openvino": ("openvino", None),
    "deepsparse": ("deepsparse", None),
    "tensorrt": ("tensorrt", None),
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
        return ENGINES[self.runtime]


def _has_nvidia_gpu() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def _availability(name: str, home: Path, allow_deepsparse: bool, explicit: bool,
                  step: Callable[[str], None] | None) -> tuple[str | None, str | None]:
    """(python, None) when the candidate can run, else (None, reason)."""
    runtime = CANDIDATES[name][0]
    if runtime in ("onnxruntime", "openvino"):
        if importlib.util.find_spec(runtime) is None:
            return None, f"{runtime} is not installed (pip install chiml[runtimes])"
        return sys.executable, None
    if runtime == "deepsparse":
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
    # tensorrt
    if importlib.util.find_spec("tensorrt") is None:
        gpu = "" if _has_nvidia_gpu() else "; this machine has no NVIDIA GPU"
        return None, f"TensorRT is not installed (GPU nodes only{gpu})"
    if not _has_nvidia_gpu():
        return None, "no NVIDIA GPU on this machine"
    return sys.executable, None


def names(target: str, int8: bool = False) -> list[str]:
    """The candidates ``target`` asks for, in the order they are tried."""
    if target not in TARGETS:
        raise ChimlError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    if target == "auto":
        wanted = ["onnxruntime", "openvino", "deepsparse", "tensorrt"]
        if int8:
            wanted.insert(1, "onnxruntime-int8")
        return wanted
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


def build_artifact(candidate: Candidate, exported: ExportResult, dest: Path, source: dict[str, Any]) -> Path:
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
        inputs=[TensorSpec(**item) for item in exported.inputs],
        outputs=[TensorSpec(**item) for item in exported.outputs],
        task=exported.task,
        options=candidate.options,
        source={**source, "opset": exported.opset, "ir_version": exported.ir_version, "exporter": exported.exporter},
    )
    spec.write(directory)
    return directory
