"""V2 (Open Inference Protocol) and V1 request/response bodies <-> numpy arrays.

Everything here works on bytes and numpy, without pydantic models in between: a V2 JSON body is
parsed once by orjson, each input is checked against the model's declared
:class:`~chiml_contract.TensorSpec` and becomes one array, and outputs are written by orjson
straight from the arrays. The binary tensor data extension is supported both ways: a request
whose ``Inference-Header-Content-Length`` header splits the body into a JSON header and raw
tensor bytes (``parameters.binary_data_size`` per input), and outputs sent as raw bytes when the
request asks for it (``parameters.binary_data_output`` or ``parameters.binary_data`` per
requested output).

Anything a client can get wrong raises :class:`kserve.errors.InvalidInput` with one line that
names the tensor and the problem; the server answers it with 400. Nothing is allocated from a
number the client claims (a shape, a size) before it is checked against the bytes actually
received, so a small body cannot make the server allocate a large array.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from kserve.errors import InvalidInput

from chiml_contract import datatypes
from chiml_contract.tensors import TensorSpec, shape_text

#: the binary tensor data extension's header (bytes of JSON at the start of the body)
HEADER_LENGTH = "inference-header-content-length"
_NUMPY_JSON = orjson.OPT_SERIALIZE_NUMPY
# JSON data of these numpy kinds is acceptable for a tensor of a datatype of this kind
_ACCEPTS = {"b": "b", "u": "bui", "i": "bui", "f": "buif"}


@dataclass
class Decoded:
    """A decoded V2 request: validated input arrays and what the response should look like."""

    arrays: dict[str, np.ndarray]
    id: str | None = None
    #: output name -> send as binary; None: every output, as JSON unless binary_data_output
    requested: dict[str, bool] | None = None
    binary_output: bool = False


def loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidInput(f"request body is not valid JSON: {err}") from None


def _spec(specs: Sequence[TensorSpec], name: Any, model: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    expected = ", ".join(repr(spec.name) for spec in specs)
    raise InvalidInput(f"unknown input tensor {name!r}: model {model!r} takes {expected}")


def check_header(spec: TensorSpec, datatype: Any, shape: Any) -> tuple[str, list[int]]:
    """The tensor's declared datatype (castable to the model's without loss) and shape."""
    if not isinstance(datatype, str) or datatype.upper() not in datatypes.DATATYPES:
        raise InvalidInput(f"input {spec.name!r}: datatype {datatype} given, the model takes {spec.datatype}")
    datatype = datatype.upper()
    if not datatypes.can_cast_losslessly(datatype, spec.datatype):
        raise InvalidInput(f"input {spec.name!r}: datatype {datatype} given, the model takes {spec.datatype} "
                           "(and the cast would lose information)")
    if not isinstance(shape, list) or any(type(dim) is not int or dim < 0 for dim in shape):
        raise InvalidInput(f"input {spec.name!r}: shape {shape} must be a list of non-negative integers")
    if not spec.shape_matches(shape):
        raise InvalidInput(f"input {spec.name!r}: shape {shape_text(shape)} does not match the model's "
                           f"{shape_text(spec.shape)} (-1 = any size)")
    if 0 in shape:
        raise InvalidInput(f"input {spec.name!r}: shape {shape_text(shape)} holds no values")
    return datatype, shape


def array_from_json(spec: TensorSpec, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    """JSON ``data`` (flat or nested, row-major) -> an array of the model's dtype and ``shape``."""
    if not isinstance(data, list):
        raise InvalidInput(f"input {spec.name!r}: data must be a list, not {type(data).__name__}")
    want = math.prod(shape)
    if spec.datatype == "BYTES":
        try:
            array = np.array(data, dtype=object)
        except ValueError as err:
            raise InvalidInput(f"input {spec.name!r}: data is not a list of strings: {err}") from None
        if array.size != want or any(not isinstance(item, str | bytes) for item in array.flat):
            raise InvalidInput(f"input {spec.name!r}: {array.size} values given for shape {shape_text(shape)} "
                               f"({want} values), and all must be strings")
        return array.reshape(shape)
    try:
        array = np.asarray(data)
    except ValueError:
        raise InvalidInput(f"input {spec.name!r}: nested data of uneven lengths") from None
    if array.size != want:
        raise InvalidInput(f"input {spec.name!r}: {array.size} values do not fill shape {shape_text(shape)} "
                           f"({want} values)")
    kind = datatypes.get(datatype).kind
    if array.size and array.dtype.kind not in _ACCEPTS[kind]:
        raise InvalidInput(f"input {spec.name!r}: data is not {datatype} (JSON values of type {array.dtype})")
    try:
        return array.astype(spec.numpy_dtype, copy=False).reshape(shape)
    except (ValueError, OverflowError) as err:
        raise InvalidInput(f"input {spec.name!r}: data is not {spec.datatype}: {err}") from None


def array_from_bytes(spec: TensorSpec, datatype: str, shape: list[int], raw: memoryview) -> np.ndarray:
    """Raw little-endian tensor bytes (the binary extension) -> an array of the model's dtype."""
    want = math.prod(shape)
    if datatype == "BYTES":
        items, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise InvalidInput(f"input {spec.name!r}: truncated BYTES element length")
            size = int.from_bytes(raw[offset:offset + 4], "little")
            items.append(bytes(raw[offset + 4:offset + 4 + size]))
            offset += 4 + size
            if offset > len(raw):
                raise InvalidInput(f"input {spec.name!r}: a BYTES element runs past its binary data")
        if len(items) != want:
            raise InvalidInput(f"input {spec.name!r}: {len(items)} BYTES elements for shape {shape_text(shape)}")
        return np.array(items, dtype=object).reshape(shape)
    item = datatypes.get(datatype)
    if len(raw) != want * item.itemsize:
        raise InvalidInput(f"input {spec.name!r}: {len(raw)} bytes of binary data for shape {shape_text(shape)} "
                           f"of {datatype} ({want * item.itemsize} bytes)")
    array = np.frombuffer(raw, dtype=np.dtype(item.numpy).newbyteorder("<")).reshape(shape)
    return array.astype(spec.numpy_dtype, copy=False)


def decode_v2(body: bytes, specs: Sequence[TensorSpec], model: str, header_length: str | None = None) -> Decoded:
    """A V2 inference request body (JSON, or JSON + binary tensor data) -> validated arrays."""
    binary = memoryview(b"")
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            raise InvalidInput(f"Inference-Header-Content-Length {header_length!r} is not a number") from None
        if not 0 < split <= len(body):
            raise InvalidInput(f"Inference-Header-Content-Length {split} is outside the body ({len(body)} bytes)")
        binary = memoryview(body)[split:]
        body = body[:split]
    request = loads(body)
    if not isinstance(request, dict):
        raise InvalidInput("invalid inference request: body: must be a JSON object")
    inputs = request.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidInput('invalid inference request: "inputs" must be a list of tensors')
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise InvalidInput(f"invalid inference request: inputs.{index} must be an object")
        spec = _spec(specs, item.get("name"), model)
        if spec.name in arrays:
            raise InvalidInput(f"input {spec.name!r} is given twice")
        datatype, shape = check_header(spec, item.get("datatype"), item.get("shape"))
        parameters = item.get("parameters") or {}
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise InvalidInput(f"input {spec.name!r}: binary_data_size {size} is not within the "
                                   f"{len(binary)} bytes of binary data")
            arrays[spec.name] = array_from_bytes(spec, datatype, shape, binary[offset:offset + size])
            offset += size
        elif "data" in item:
            arrays[spec.name] = array_from_json(spec, datatype, shape, item["data"])
        else:
            raise InvalidInput(f"invalid inference request: inputs.{index}.data: Field required")
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    missing = [spec.name for spec in specs if spec.name not in arrays]
    if missing:
        raise InvalidInput(f"missing input tensor(s) {', '.join(map(repr, missing))} for model {model!r}")
    request_id = request.get("id")
    parameters = request.get("parameters") or {}
    decoded = Decoded(arrays, str(request_id) if request_id is not None else None,
                      binary_output=bool(isinstance(parameters, dict) and parameters.get("binary_data_output")))
    outputs = request.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                    for o in outputs):
            raise InvalidInput('invalid inference request: "outputs" must be a list of {"name": ...}')
        decoded.requested = {
            o["name"]: bool((o.get("parameters") or {}).get("binary_data", decoded.binary_output)) for o in outputs
        }
    return decoded


def output_datatype(array: np.ndarray) -> str:
    if array.dtype.kind in "USO":
        return "BYTES"
    return datatypes.from_numpy(array.dtype.name)


def _json_data(array: np.ndarray) -> Any:
    if array.dtype.kind in "USO":
        return [item.decode() if isinstance(item, bytes) else item for item in array.ravel().tolist()]
    return np.ascontiguousarray(array).ravel()


def _raw(array: np.ndarray) -> bytes:
    if array.dtype.kind in "USO":
        parts = []
        for item in array.ravel().tolist():
            data = item if isinstance(item, bytes) else str(item).encode()
            parts.append(len(data).to_bytes(4, "little") + data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def encode_v2(model: str, results: Mapping[str, np.ndarray], decoded: Decoded) -> tuple[bytes, int | None]:
    """(body, JSON header length or None): the V2 response, binary parts appended when asked for."""
    if decoded.requested is not None:
        unknown = [name for name in decoded.requested if name not in results]
        if unknown:
            raise InvalidInput(f"unknown output tensor(s) {', '.join(map(repr, unknown))}: model {model!r} "
                               f"gives {', '.join(map(repr, results))}")
        selected = {name: results[name] for name in decoded.requested}
    else:
        selected = dict(results)
    outputs, blobs = [], []
    for name, array in selected.items():
        output: dict[str, Any] = {"name": name, "datatype": output_datatype(array), "shape": list(array.shape)}
        binary = decoded.requested[name] if decoded.requested is not None else decoded.binary_output
        if binary:
            blob = _raw(array)
            output["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            output["data"] = _json_data(array)
        outputs.append(output)
    response: dict[str, Any] = {"model_name": model, "outputs": outputs}
    if decoded.id is not None:
        response["id"] = decoded.id
    header = orjson.dumps(response, option=_NUMPY_JSON)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def decode_v1(body: Any, specs: Sequence[TensorSpec], model: str) -> dict[str, np.ndarray]:
    """V1 ``{"instances": [...]}``: rows of the single input, or rows of {input: value}."""
    if not isinstance(body, dict):
        raise InvalidInput('V1 request must be a JSON object with "instances"')
    instances = body.get("instances", body.get("inputs"))
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('V1 request needs a non-empty list in "instances"')
    if all(isinstance(row, Mapping) for row in instances):
        columns = {spec.name: [row.get(spec.name) for row in instances] for spec in specs}
        unknown = sorted({str(key) for row in instances for key in row} - set(columns))
        if unknown:
            _spec(specs, unknown[0], model)  # raises, naming the tensor
    elif len(specs) == 1:
        columns = {specs[0].name: instances}
    else:
        names = ", ".join(spec.name for spec in specs)
        raise InvalidInput(f"model {model!r} has several inputs ({names}): send instances as objects")
    arrays = {}
    for spec in specs:
        values = columns[spec.name]
        if any(value is None for value in values):
            raise InvalidInput(f"input {spec.name!r} is missing from some instances")
        try:
            array = np.asarray(values, dtype=spec.numpy_dtype if spec.datatype != "BYTES" else object)
        except (ValueError, TypeError, OverflowError) as err:
            raise InvalidInput(
                f"input {spec.name!r}: instances are not {spec.datatype} arrays of one shape: {err}"
            ) from None
        if not spec.shape_matches(array.shape):
            raise InvalidInput(f"input {spec.name!r}: shape {shape_text(array.shape)} does not match the model's "
                               f"{shape_text(spec.shape)} (-1 = any size)")
        arrays[spec.name] = array
    return arrays


def jsonable(array: np.ndarray) -> Any:
    if array.dtype.kind in "USO":
        return [item.decode() if isinstance(item, bytes) else item for item in array.tolist()]
    return array.tolist()


def encode_v1(results: Mapping[str, np.ndarray]) -> bytes:
    if len(results) == 1:
        (array,) = results.values()
        return orjson.dumps({"predictions": jsonable(array)})
    columns = {name: jsonable(array) for name, array in results.items()}
    rows = len(next(iter(columns.values())))
    return orjson.dumps({"predictions": [{name: values[i] for name, values in columns.items()} for i in range(rows)]})
