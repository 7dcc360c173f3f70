"""Compiled-model runtimes: one module per runtime, each an :class:`Engine` (the runtime-neutral
core) wrapped by a :class:`chiml_serving.base.ChimlModel` subclass for serving.

:mod:`chiml_serving.registry` maps runtime names to the model classes; :data:`ENGINES` maps
them to the engines (both from :mod:`chiml_contract.runtimes`), which the benchmark worker
drives directly so that it measures the runtime and not the HTTP server. Heavy runtime
libraries (onnxruntime, openvino, deepsparse, tensorrt) are imported only when an engine
loads, so a missing one is a clear message, not an ImportError.
"""

from __future__ import annotations

import importlib
from typing import Any

from chiml_contract.runtimes import RUNTIMES

#: runtime name -> "module:EngineClass"
ENGINES: dict[str, str] = {name: runtime.engine for name, runtime in RUNTIMES.items() if runtime.engine}


def import_object(ref: str) -> Any:
    """Import ``module:attribute``."""
    module_name, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def engine_class(name: str) -> Any:
    if name not in ENGINES:
        raise ValueError(f"unknown runtime {name!r}: choose one of {', '.join(ENGINES)}")
    return import_object(ENGINES[name])
