"""``ChimlModel``: the kserve.Model every chiml runtime subclasses.

A runtime only knows how to load an artifact and run arrays through it. Everything a client
can get wrong is handled here, once, for every runtime:

* V2 (Open Inference Protocol) requests arrive as ``InferRequest``; V1 requests as a dict with
  ``instances`` (or ``inputs``). Both are checked against the declared input specs (tensor
  name, datatype, shape with ``-1`` for dynamic dimensions) and turned into numpy arrays.
  Anything wrong raises kserve's ``InvalidInput``, which kserve's REST server answers with
  HTTP 400 and ``{"error": "<message>"}``: the message names the tensor and the problem.
* Results (``dict[str, np.ndarray]``) are encoded as a V2 ``InferResponse`` (JSON data, not
  the binary extension) or a V1 ``{"predictions": ...}``.
* ``get_input_types``/``get_output_types`` give ``GET /v2/models/<name>`` the real names,
  datatypes and shapes; :mod:`chiml_serving.server` reports ``runtime`` as the metadata's
  ``platform``.

Subclasses implement :meth:`ChimlModel.load_artifact` (load, then set ``self.inputs`` and
``self.outputs``) and :meth:`ChimlModel.infer`. Objects that cannot be pickled (an
onnxruntime session, a TensorRT engine) go in attributes listed in ``transient``: with
``--workers N`` kserve pickles the loaded model into N spawned processes, so the base drops
those attributes when pickled and loads the artifact again in each worker.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from kserve import Model
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.numpy_codec import from_np_dtype, to_np_dtype

log = logging.getLogger("chiml_serving")

V2_DATATYPES = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"}
)


def datatype_of(dtype: np.dtype[Any] | type) -> str:
    """The V2 datatype name of a numpy dtype (``BYTES`` for strings and objects)."""
    name = from_np_dtype(np.dtype(dtype))
    if name is None:
        raise ValueError(f"numpy dtype {np.dtype(dtype)} has no V2 datatype")
    return name


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype name."""
    dtype = to_np_dtype(datatype.upper())
    if dtype is None:
        raise ValueError(f"unknown V2 datatype {datatype!r}")
    return np.dtype(dtype)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: name, V2 datatype and shape (``-1`` = any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.datatype not in V2_DATATYPES:
            raise ValueError(f"tensor {self.name!r}: unknown V2 datatype {self.datatype!r}")
        object.__setattr__(self, "shape", tuple(int(dim) for dim in self.shape))

    def to_metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def shape_matches(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.shape) and all(
            want == -1 or want == got for want, got in zip(self.shape, shape, strict=True)
        )


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(dim) for dim in shape) + "]"


class ChimlModel(Model):
    """Base of every chiml runtime (see the module docstring for the contract)."""

    #: Name reported as ``platform`` in ``GET /v2/models/<name>`` and used by the registry.
    runtime: ClassVar[str] = "base"
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
    def predict(
        self,
        payload: InferRequest | dict[str, Any],
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse | dict[str, Any]:
        # Synchronous on purpose: inference is CPU-bound and short, and kserve runs a sync
        # predict inline, which saves a thread hop per request.
        self._wait_loaded()
        if isinstance(payload, InferRequest):
            arrays = self.decode_v2(payload)
            results = self._run(arrays)
            return self.encode_v2(payload, results)
        if isinstance(payload, bytes | bytearray):
            # V1 bodies sent without Content-Type: application/json reach us undecoded.
            try:
                payload = json.loads(payload)
            except ValueError as err:
                raise InvalidInput(f"request body is not valid JSON: {err}") from None
        if isinstance(payload, Mapping):
            arrays = self.decode_v1(payload)
            return self.encode_v1(self._run(arrays))
        raise InvalidInput(f"unsupported request body of type {type(payload).__name__}")

    def _run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.infer(arrays)
        return {name: np.asarray(value) for name, value in results.items()}

    def _spec(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        expected = ", ".join(repr(spec.name) for spec in self.inputs)
        raise InvalidInput(f"unknown input tensor {name!r}: model {self.name!r} takes {expected}")

    def check_array(self, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
        """Shape check of an already converted input array."""
        if not spec.shape_matches(array.shape):
            raise InvalidInput(
                f"input {spec.name!r}: shape {_shape_text(array.shape)} does not match the model's "
                f"{_shape_text(spec.shape)} (-1 = any size)"
            )
        return array

    def decode_v2(self, request: InferRequest) -> dict[str, np.ndarray]:
        """V2 inputs -> validated numpy arrays keyed by input name."""
        arrays: dict[str, np.ndarray] = {}
        for item in request.inputs:
            spec = self._spec(item.name)
            if item.name in arrays:
                raise InvalidInput(f"input {item.name!r} is given twice")
            datatype = (item.datatype or "").upper()
            if datatype != spec.datatype:
                raise InvalidInput(
                    f"input {item.name!r}: datatype {item.datatype} given, the model takes {spec.datatype}"
                )
            shape = list(item.shape or [])
            if any(not isinstance(dim, int) or dim < 0 for dim in shape):
                raise InvalidInput(f"input {item.name!r}: shape {shape} must be non-negative integers")
            if not spec.shape_matches(shape):
                raise InvalidInput(
                    f"input {item.name!r}: shape {_shape_text(shape)} does not match the model's "
                    f"{_shape_text(spec.shape)} (-1 = any size)"
                )
            try:
                array = item.as_numpy()
            except InvalidInput:
                raise
            except (ValueError, TypeError) as err:
                count = _count(item.data)
                if count is not None and count != math.prod(shape):
                    raise InvalidInput(
                        f"input {item.name!r}: {count} values do not fill shape {_shape_text(shape)} "
                        f"({math.prod(shape)} values)"
                    ) from None
                raise InvalidInput(f"input {item.name!r}: data is not {spec.datatype}: {err}") from None
            arrays[item.name] = array
        missing = [spec.name for spec in self.inputs if spec.name not in arrays]
        if missing:
            raise InvalidInput(f"missing input tensor(s) {', '.join(map(repr, missing))} for model {self.name!r}")
        return arrays

    def decode_v1(self, body: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """V1 ``{"instances": [...]}``: rows of the single input, or rows of {input: value}."""
        instances = body.get("instances", body.get("inputs"))
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('V1 request needs a non-empty list in "instances"')
        if all(isinstance(row, Mapping) for row in instances):
            columns = {spec.name: [row.get(spec.name) for row in instances] for spec in self.inputs}
            unknown = {key for row in instances for key in row} - set(columns)
            if unknown:
                self._spec(sorted(unknown)[0])  # raises, naming the tensor
        elif len(self.inputs) == 1:
            columns = {self.inputs[0].name: instances}
        else:
            names = ", ".join(spec.name for spec in self.inputs)
            raise InvalidInput(f"model {self.name!r} has several inputs ({names}): send instances as objects")
        arrays = {}
        for spec in self.inputs:
            values = columns[spec.name]
            if any(value is None for value in values):
                raise InvalidInput(f"input {spec.name!r} is missing from some instances")
            try:
                array = np.asarray(values, dtype=numpy_dtype(spec.datatype))
            except (ValueError, TypeError) as err:
                raise InvalidInput(
                    f"input {spec.name!r}: instances are not {spec.datatype} arrays of one shape: {err}"
                ) from None
            arrays[spec.name] = self.check_array(spec, array)
        return arrays

    # ------------------------------------------------------------------ response encoding
    def encode_v2(self, request: InferRequest, results: dict[str, np.ndarray]) -> InferResponse:
        outputs = []
        for name, array in results.items():
            if array.dtype.kind in "US":  # kserve only JSON-encodes BYTES from object arrays
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

    def encode_v1(self, results: dict[str, np.ndarray]) -> dict[str, Any]:
        if len(results) == 1:
            (array,) = results.values()
            return {"predictions": _jsonable(array)}
        columns = {name: _jsonable(array) for name, array in results.items()}
        rows = len(next(iter(columns.values())))
        return {"predictions": [{name: values[i] for name, values in columns.items()} for i in range(rows)]}


def _jsonable(array: np.ndarray) -> list[Any]:
    if array.dtype.kind in "SO":
        return [item.decode() if isinstance(item, bytes) else item for item in array.tolist()]
    return array.tolist()


def _count(data: Any) -> int | None:
    """Number of scalars in (possibly nested) list data; None when it is not a list."""
    if isinstance(data, np.ndarray):
        return int(data.size)
    if not isinstance(data, list):
        return None
    total = 0
    for item in data:
        if isinstance(item, list):
            sub = _count(item)
            total += sub or 0
        else:
            total += 1
    return total
