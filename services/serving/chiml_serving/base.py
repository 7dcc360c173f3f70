"""``ChimlModel``: the kserve.Model every chiml runtime subclasses.

A runtime only knows how to load an artifact and run arrays through it. Everything a client
can get wrong is handled once, for every runtime, in :mod:`chiml_serving.codec`: each input
tensor is checked against the declared spec (name, datatype castable without loss, shape with
``-1`` for dynamic dimensions) and becomes a numpy array; anything wrong raises kserve's
``InvalidInput``, answered with HTTP 400 and ``{"error": "<message>"}`` naming the tensor.

Two ways in, one model:

* chiml's REST server (:mod:`chiml_serving.app`) decodes bodies itself and calls
  :meth:`ChimlModel.infer_arrays`;
* kserve's machinery (the gRPC servicer, or kserve's own ``ModelServer`` if someone serves the
  class with it) calls :meth:`ChimlModel.predict` with an ``InferRequest`` or a V1 dict.

``get_input_types``/``get_output_types`` give ``GET /v2/models/<name>`` the real names,
datatypes and shapes, and ``runtime`` is reported as the metadata's ``platform``.

Subclasses implement :meth:`ChimlModel.load_artifact` (load, then set ``self.inputs`` and
``self.outputs``) and :meth:`ChimlModel.infer`. Objects that cannot be pickled (an
onnxruntime session, a TensorRT engine) go in attributes listed in ``transient``: a model
pickled into another process (kserve's ``--workers``) drops them and loads the artifact again
there, in a background thread.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from kserve import Model
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from chiml_contract import datatypes
from chiml_contract.tensors import TensorSpec, shape_text
from chiml_serving import codec

log = logging.getLogger("chiml_serving")

__all__ = ["ChimlModel", "TensorSpec", "datatype_of", "numpy_dtype"]


def datatype_of(dtype: np.dtype[Any] | type) -> str:
    """The V2 datatype name of a numpy dtype (``BYTES`` for strings and objects)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "USO":
        return "BYTES"
    try:
        return datatypes.from_numpy(dtype.name)
    except datatypes.UnknownDatatype:
        raise ValueError(f"numpy dtype {dtype} has no V2 datatype") from None


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype name."""
    try:
        return np.dtype(datatypes.get(datatype).numpy)
    except datatypes.UnknownDatatype:
        raise ValueError(f"unknown V2 datatype {datatype!r}") from None


class ChimlModel(Model):  # type: ignore[misc]  # kserve ships no type information
    """Base of every chiml runtime (see the module docstring for the contract)."""

    #: Name reported as ``platform`` in ``GET /v2/models/<name>`` and used by the registry.
    runtime: ClassVar[str] = "base"
    #: Rows are independent (row i of the output depends only on row i of the input), so
    #: requests that arrive together may run as one batch (set by load_artifact).
    batchable: bool = False
    #: Attributes holding unpicklable loaded state; rebuilt by :meth:`load` in each worker.
    transient: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, model_dir: str | Path) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []

    # ------------------------------------------------------------------ subclass API
    @abstractmethod
    def load_artifact(self, path: Path) -> None:
        """Load the artifact under ``path``; set ``self.inputs`` and ``self.outputs``."""

    @abstractmethod
    def infer(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run validated inputs (one array per declared input) through the model."""

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> bool:
        self.load_artifact(self.model_dir)
        if not self.inputs:
            raise RuntimeError(f"runtime {self.runtime} declared no inputs for {self.model_dir}")
        self.ready = True
        return self.ready

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for attribute in self.transient:
            state[attribute] = None
        # kserve's lazily created HTTP/gRPC clients hold sockets; each process makes its own.
        state["_http_client_instance"] = None
        state["_grpc_client_stub"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickling happens in a fresh worker before it answers kserve's liveness ping (5 s
        # timeout, then the worker is killed and respawned): loading a model here would turn
        # a slow load into a respawn loop. So the artifact loads in a thread, and requests
        # reaching this worker before it is done wait for it.
        self.__dict__.update(state)
        if self.ready and self.transient:
            self._loaded = threading.Event()
            self._load_error: BaseException | None = None
            threading.Thread(target=self._load_in_worker, name="chiml-load", daemon=True).start()

    def _load_in_worker(self) -> None:
        try:
            self.load_artifact(self.model_dir)
        except BaseException as err:
            self._load_error = err
            log.exception("worker %s could not load %s", os.getpid(), self.model_dir)
        finally:
            self._loaded.set()

    def _wait_loaded(self) -> None:
        event = self.__dict__.get("_loaded")
        if event is None:
            return
        event.wait()
        if self._load_error is not None:
            raise InferenceError(f"this server worker could not load the model: {self._load_error}")

    # ------------------------------------------------------------------ metadata
    def get_input_types(self) -> list[dict[str, Any]]:
        return [spec.to_metadata() for spec in self.inputs]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [spec.to_metadata() for spec in self.outputs]

    # ------------------------------------------------------------------ request handling
    def infer_arrays(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validated input arrays -> output arrays (what every protocol path calls)."""
        self._wait_loaded()
        results = self.infer(arrays)
        return {name: np.asarray(value) for name, value in results.items()}

    def predict(
        self,
        payload: InferRequest | dict[str, Any],
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse | dict[str, Any]:
        """kserve's entry point (gRPC, or kserve's own ModelServer): ``InferRequest`` or a V1 dict.

        chiml's REST server (:mod:`chiml_serving.app`) decodes bodies itself and calls
        :meth:`infer_arrays`; both paths apply the same checks (:mod:`chiml_serving.codec`).
        """
        if isinstance(payload, InferRequest):
            return self.encode_v2(payload, self.infer_arrays(self.decode_v2(payload)))
        if isinstance(payload, bytes | bytearray):
            # V1 bodies sent without Content-Type: application/json reach us undecoded.
            payload = codec.loads(bytes(payload))
        if isinstance(payload, Mapping):
            results = self.infer_arrays(codec.decode_v1(dict(payload), self.inputs, self.name))
            return json.loads(codec.encode_v1(results))
        raise InvalidInput(f"unsupported request body of type {type(payload).__name__}")

    def decode_v2(self, request: InferRequest) -> dict[str, np.ndarray]:
        """kserve's ``InferRequest`` -> validated numpy arrays keyed by input name."""
        arrays: dict[str, np.ndarray] = {}
        specs = {spec.name: spec for spec in self.inputs}
        for item in request.inputs:
            spec = specs.get(item.name)
            if spec is None:
                expected = ", ".join(repr(name) for name in specs)
                raise InvalidInput(f"unknown input tensor {item.name!r}: model {self.name!r} takes {expected}")
            if item.name in arrays:
                raise InvalidInput(f"input {item.name!r} is given twice")
            datatype, shape = codec.check_header(spec, item.datatype, list(item.shape or []))
            if isinstance(item.data, list):
                arrays[item.name] = codec.array_from_json(spec, datatype, shape, item.data)
                continue
            try:
                array = item.as_numpy()
            except (ValueError, TypeError, InvalidInput) as err:
                raise InvalidInput(f"input {item.name!r}: data is not {datatype}: {err}") from None
            if array.size != math.prod(shape):
                raise InvalidInput(f"input {item.name!r}: {array.size} values do not fill shape {shape_text(shape)}")
            arrays[item.name] = array.reshape(shape).astype(spec.numpy_dtype, copy=False)
        missing = [spec.name for spec in self.inputs if spec.name not in arrays]
        if missing:
            raise InvalidInput(f"missing input tensor(s) {', '.join(map(repr, missing))} for model {self.name!r}")
        return arrays

    def encode_v2(self, request: InferRequest, results: dict[str, np.ndarray]) -> InferResponse:
        """Output arrays -> kserve's ``InferResponse`` (JSON data; gRPC sends it as raw contents)."""
        outputs = []
        for name, array in results.items():
            if array.dtype.kind in "US":  # kserve only encodes BYTES from object arrays
                array = array.astype(object)
            output = InferOutput(name=name, shape=list(array.shape), datatype=datatype_of(array.dtype))
            output.set_data_from_numpy(array, binary_data=False)
            outputs.append(output)
        return InferResponse(
            response_id=request.id or "",
            model_name=self.name,
            infer_outputs=outputs,
            requested_outputs=request.request_outputs,
        )
