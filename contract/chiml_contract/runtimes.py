"""The serving runtimes, and the command line that starts one.

Everything that names a runtime reads this table: the ``python -m chiml_serving --runtime``
choices, the local endpoint backend, the Kubernetes backend (model format and
ClusterServingRuntime of ``helm/charts/chiml-runtimes``), ``chiml optimize`` (which runtimes
exist, which library each needs), the CLI help.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: where KServe's storage initializer puts the model in a pod
POD_MODEL_DIR = "/mnt/models"
#: the REST port inside a pod (helm/charts/chiml-runtimes values.yaml httpPort)
POD_HTTP_PORT = 8080


@dataclass(frozen=True)
class Runtime:
    """One serving runtime."""

    name: str
    #: ``module:Class`` of the kserve.Model subclass in chiml_serving
    model_class: str
    #: the KServe model format an InferenceService names
    model_format: str
    #: the python module the runtime needs (imported only where it serves)
    library: str
    device: Literal["cpu", "gpu"] = "cpu"
    #: ``module:Class`` of the runtime-neutral engine (compiled runtimes); None for mlflow
    engine: str | None = None
    #: runs in an environment of its own (its pins conflict with the platform's)
    isolated: bool = False

    @property
    def serving_runtime(self) -> str:
        """The ClusterServingRuntime that runs it (helm/charts/chiml-runtimes)."""
        return f"chiml-{self.name}"

    @property
    def compiled(self) -> bool:
        """Serves a ``chiml optimize`` artifact (``chiml-runtime.json``) rather than an MLflow model."""
        return self.engine is not None


RUNTIMES: dict[str, Runtime] = {
    runtime.name: runtime
    for runtime in (
        Runtime("mlflow", "chiml_serving.pyfunc:PyFuncModel", "mlflow", "mlflow.pyfunc"),
        Runtime("onnxruntime", "chiml_serving.runtimes.onnxruntime:OnnxRuntimeModel", "onnx", "onnxruntime",
                engine="chiml_serving.runtimes.onnxruntime:OnnxRuntimeEngine"),
        Runtime("openvino", "chiml_serving.runtimes.openvino:OpenVinoModel", "onnx", "openvino",
                engine="chiml_serving.runtimes.openvino:OpenVinoEngine"),
        Runtime("deepsparse", "chiml_serving.runtimes.deepsparse:DeepSparseModel", "onnx", "deepsparse",
                engine="chiml_serving.runtimes.deepsparse:DeepSparseEngine", isolated=True),
        Runtime("tensorrt", "chiml_serving.runtimes.tensorrt:TensorRTModel", "tensorrt", "tensorrt", device="gpu",
                engine="chiml_serving.runtimes.tensorrt:TensorRTEngine"),
    )
}
#: the runtime of a plain MLflow model
DEFAULT = "mlflow"


class UnknownRuntime(LookupError):
    """A runtime name that is not in :data:`RUNTIMES`."""


def get(name: str) -> Runtime:
    """The runtime called ``name``."""
    try:
        return RUNTIMES[name]
    except KeyError:
        raise UnknownRuntime(f"unknown runtime {name!r}: choose one of {', '.join(RUNTIMES)}") from None


def names(*, compiled: bool | None = None) -> list[str]:
    """Runtime names, optionally only the compiled (or only the non-compiled) ones."""
    return [name for name, runtime in RUNTIMES.items() if compiled is None or runtime.compiled == compiled]


def serve_command(python: str, runtime: str, model_name: str, model_dir: str | Path, http_port: int, *,
                  host: str = "127.0.0.1", workers: int = 1, grpc_port: int | None = None) -> list[str]:
    """The command line of one endpoint process (``python -m chiml_serving``)."""
    get(runtime)
    command = [python, "-m", "chiml_serving", "--runtime", runtime, "--model-name", model_name,
               "--model-dir", str(model_dir), "--http-port", str(http_port), "--workers", str(workers),
               "--host", host]
    if grpc_port is not None:
        command += ["--grpc-port", str(grpc_port)]
    return command
