"""Runtime name -> the kserve.Model subclass that serves it.

Classes are named by import string and imported only when chosen, so serving an MLflow model
never imports onnxruntime or OpenVINO (and a missing optional runtime is a clear error).
The compiled runtimes live in :mod:`chiml_serving.runtimes` (owned by the optimize work).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the control plane imports RUNTIMES without paying for kserve
    from chiml_serving.base import ChimlModel

RUNTIMES: dict[str, str] = {
    "mlflow": "chiml_serving.pyfunc:PyFuncModel",
    "onnxruntime": "chiml_serving.runtimes.onnxruntime:OnnxRuntimeModel",
    "openvino": "chiml_serving.runtimes.openvino:OpenVinoModel",
    "deepsparse": "chiml_serving.runtimes.deepsparse:DeepSparseModel",
    "tensorrt": "chiml_serving.runtimes.tensorrt:TensorRTModel",
}


class UnknownRuntime(LookupError):
    """The runtime name is not in :data:`RUNTIMES`, or its module cannot be imported."""


def runtime_class(runtime: str) -> type[ChimlModel]:
    """Import and return the model class serving ``runtime``."""
    try:
        target = RUNTIMES[runtime]
    except KeyError:
        raise UnknownRuntime(f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}") from None
    from chiml_serving.base import ChimlModel

    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UnknownRuntime(f"runtime {runtime!r} is not available here ({err})") from err
    cls = getattr(module, class_name, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, ChimlModel)):
        raise UnknownRuntime(f"runtime {runtime!r}: {target} is not a ChimlModel subclass")
    return cls
