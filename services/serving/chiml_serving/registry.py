"""Runtime name -> the kserve.Model subclass that serves it.

The names and classes are :data:`chiml_contract.runtimes.RUNTIMES` (the one list both planes
read). Classes are named by import string and imported only when chosen, so serving an MLflow
model never imports onnxruntime or OpenVINO (and a missing optional runtime is a clear error).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from chiml_contract import runtimes

if TYPE_CHECKING:
    from chiml_serving.base import ChimlModel

RUNTIMES: dict[str, str] = {name: runtime.model_class for name, runtime in runtimes.RUNTIMES.items()}


class UnknownRuntime(LookupError):
    """The runtime name is not in :data:`RUNTIMES`, or its module cannot be imported."""


def runtime_class(runtime: str) -> type[ChimlModel]:
    """Import and return the model class serving ``runtime``."""
    try:
        target = runtimes.get(runtime).model_class
    except runtimes.UnknownRuntime as err:
        raise UnknownRuntime(str(err)) from None
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
