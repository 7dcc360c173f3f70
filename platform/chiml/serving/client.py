"""The prediction client: V2 (Open Inference Protocol) requests over httpx, numpy in and out.

``predict(platform, "digits", x)`` takes one numpy array (for a single-input model) or a dict
input name -> array, and returns one array (a single output) or a dict output name -> array.
Input arrays are cast to the datatype the endpoint declares when numpy calls that cast
"same kind" (float64 -> FP32, int64 -> INT32...); other mismatches are sent as they are and the
endpoint answers with a 400 naming the problem, which becomes an :class:`InvalidInputError`
(a 404, :class:`NotFoundError`; an endpoint that does not answer, :class:`UnreachableError`).

JSON request files (``chiml predict NAME --file F``, :func:`request_from_json`) may be:

* a V2 request body: ``{"inputs": [{"name": ..., "datatype": ..., "shape": [...], "data": [...]}]}``
  (sent as is, so datatype/shape mistakes are reported by the endpoint);
* plain nested lists for a single-input model: ``{"inputs": [[...], [...]]}``,
  ``{"instances": [[...], ...]}`` (the V1 shape) or a bare ``[[...], ...]``;
* a mapping of input name -> nested lists: ``{"inputs": {"pixels": [[...]]}}``.

Plain lists take the endpoint's declared datatype; the shape is the nested lists' shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx
import numpy as np

from chiml.errors import ChimlError, InvalidInputError, NotFoundError, UnreachableError
from chiml.serving.backend import EndpointBackend
from chiml.sites import ServingSite
from chiml_contract import datatypes

_metadata_cache: dict[tuple[str, str], dict[str, Any]] = {}


def _numpy_dtype(datatype: str) -> np.dtype[Any]:
    try:
        return np.dtype(datatypes.get(datatype).numpy)
    except datatypes.UnknownDatatype:
        raise ChimlError(f"the endpoint declared an unknown datatype {datatype!r}") from None


def _datatype(dtype: np.dtype[Any]) -> str:
    if dtype.kind in "OUS":
        return "BYTES"
    try:
        return datatypes.from_numpy(dtype.name)
    except datatypes.UnknownDatatype:
        raise InvalidInputError(f"numpy dtype {dtype} cannot be sent over the V2 protocol") from None


# ---------------------------------------------------------------------- HTTP
def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or f"HTTP {response.status_code}"
    if isinstance(body, Mapping):
        return str(body.get("error") or body.get("detail") or body)
    return str(body)


Auth = tuple[str, str] | None
# Answers of a proxy in front of the replicas (HAProxy locally, the ingress on a cluster) when
# none of them answered: the endpoint is unreachable rather than broken.
_UNAVAILABLE = (502, 503, 504)


def endpoint_auth(backend: EndpointBackend) -> Auth:
    """Basic-auth credentials the backend's endpoints need (KServe behind the ingress), if any."""
    return backend.auth()


def _request(method: str, url: str, timeout: float, json: Any, auth: Auth) -> httpx.Response:
    """One exchange, sent again once when the answer was cut off: a replica killed while writing
    its response has already sent the headers, so neither the front nor KServe's ingress can
    replay it. Inference and metadata reads have no side effect, so repeating them is safe."""
    try:
        return httpx.request(method, url, json=json, timeout=timeout, auth=auth)
    except httpx.RemoteProtocolError:
        return httpx.request(method, url, json=json, timeout=timeout, auth=auth)


def _send(method: str, url: str, name: str, timeout: float, json: Any = None, auth: Auth = None) -> dict[str, Any]:
    try:
        response = _request(method, url, timeout, json, auth)
    except httpx.TimeoutException:
        raise UnreachableError(f"endpoint {name} did not answer within {timeout:.0f}s ({url})") from None
    except httpx.HTTPError as err:
        raise UnreachableError(
            f"endpoint {name} is not answering at {url} ({err.__class__.__name__})",
            hint="see `chiml endpoints list` (is the platform up?)",
        ) from None
    status = response.status_code
    if status in _UNAVAILABLE:  # the front or ingress has no replica that answers
        raise UnreachableError(f"endpoint {name} has no replica answering (HTTP {status}): {_error_text(response)}",
                               hint=f"see `chiml endpoints describe {name}`")
    if status >= 500:
        raise ChimlError(f"endpoint {name} failed (HTTP {status}): {_error_text(response)}")
    if status == 404:
        raise NotFoundError(f"endpoint {name} does not serve that (HTTP 404): {_error_text(response)}")
    if status >= 400:
        raise InvalidInputError(f"endpoint {name} rejected the request (HTTP {status}): {_error_text(response)}")
    try:
        return response.json()
    except ValueError:
        raise ChimlError(f"endpoint {name} answered with something that is not JSON") from None


def model_metadata(
    url: str, name: str, timeout: float = 10.0, refresh: bool = False, auth: Auth = None
) -> dict[str, Any]:
    """``GET <url>/v2/models/<name>`` (cached per process)."""
    key = (url, name)
    if refresh or key not in _metadata_cache:
        _metadata_cache[key] = _send("GET", f"{url}/v2/models/{name}", name, timeout, auth=auth)
    return _metadata_cache[key]


def infer_json(
    url: str, name: str, payload: Mapping[str, Any], timeout: float = 60.0, auth: Auth = None
) -> dict[str, Any]:
    """POST a V2 request body; the V2 response body, or :class:`ChimlError` with the endpoint's reason."""
    return _send("POST", f"{url}/v2/models/{name}/infer", name, timeout, json=dict(payload), auth=auth)


# ---------------------------------------------------------------------- request building
def _tensor(name: str, value: Any, datatype: str | None) -> dict[str, Any]:
    array = np.asarray(value)
    if datatype is not None:
        target = _numpy_dtype(datatype)
        if array.dtype != target and (
            (target.kind == "O" and array.dtype.kind in "US") or np.can_cast(array.dtype, target, "same_kind")
        ):
            array = array.astype(target)
    kind = _datatype(array.dtype)
    data = [str(item) for item in array.ravel().tolist()] if kind == "BYTES" else array.ravel().tolist()
    return {"name": name, "datatype": kind, "shape": list(array.shape), "data": data}


def build_request(inputs: Any, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A V2 request body from an array (single-input models) or a dict name -> array."""
    declared = {spec["name"]: spec.get("datatype") for spec in metadata.get("inputs", [])}
    if isinstance(inputs, Mapping):
        return {"inputs": [_tensor(str(key), value, declared.get(str(key))) for key, value in inputs.items()]}
    if len(declared) != 1:
        names = ", ".join(declared) or "none declared"
        raise InvalidInputError(
            f"model {metadata.get('name')!r} takes several inputs ({names}): pass a dict name -> array"
        )
    (name, datatype), = declared.items()
    return {"inputs": [_tensor(name, inputs, datatype)]}


def request_from_json(data: Any, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A V2 request body from any accepted JSON request file format (see the module docstring)."""
    if isinstance(data, Mapping) and "inputs" in data:
        inputs = data["inputs"]
        if isinstance(inputs, list) and inputs and all(isinstance(item, Mapping) and "name" in item for item in inputs):
            return dict(data)  # already a V2 body
        if isinstance(inputs, Mapping):
            return build_request(inputs, metadata)
        return build_request(_plain(inputs), metadata)
    if isinstance(data, Mapping) and "instances" in data:
        instances = data["instances"]
        if isinstance(instances, list) and instances and all(isinstance(row, Mapping) for row in instances):
            names = {key for row in instances for key in row}
            return build_request({key: _plain([row.get(key) for row in instances]) for key in names}, metadata)
        return build_request(_plain(instances), metadata)
    if isinstance(data, list):
        return build_request(_plain(data), metadata)
    raise InvalidInputError('request JSON must be a V2 body, {"inputs": ...}, {"instances": [...]} or a list')


def _plain(values: Any) -> np.ndarray:
    try:
        return np.asarray(values)
    except ValueError as err:  # ragged lists
        raise InvalidInputError(f"request data is not a rectangular array: {err}") from None


# ---------------------------------------------------------------------- response decoding
def decode_outputs(response: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """V2 response outputs -> arrays with the declared datatype and shape."""
    result: dict[str, np.ndarray] = {}
    for output in response.get("outputs", []):
        dtype = _numpy_dtype(output["datatype"])
        array = np.asarray(output.get("data", []), dtype=dtype)
        result[output["name"]] = array.reshape(output.get("shape", array.shape))
    return result


# ---------------------------------------------------------------------- the SDK call
def endpoint_url(backend: EndpointBackend, name: str) -> str:
    """The endpoint's one URL (local: its front, which spreads requests over the replicas)."""
    return str(backend.url(name))


def predict(platform: ServingSite, name: str, inputs: Any, *, timeout: float | None = None) -> Any:
    """Send ``inputs`` to endpoint ``name``; one array back, or a dict when there are several outputs."""
    response = _exchange(platform, name, lambda metadata: build_request(inputs, metadata), timeout)
    outputs = decode_outputs(response)
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    return outputs


def infer(platform: ServingSite, name: str, request: Any, *, timeout: float | None = None) -> dict[str, Any]:
    """Send a JSON request (any format :func:`request_from_json` accepts) to endpoint ``name``;
    the V2 response body (what ``chiml predict`` shows)."""
    return _exchange(platform, name, lambda metadata: request_from_json(request, metadata), timeout)


def _exchange(
    platform: ServingSite, name: str, body: Callable[[Mapping[str, Any]], dict[str, Any]], timeout: float | None
) -> dict[str, Any]:
    if timeout is None:
        timeout = platform.config.serving.request_timeout_s
    backend = platform.endpoints
    url = endpoint_url(backend, name)
    auth = endpoint_auth(backend)
    metadata = model_metadata(url, name, auth=auth)
    try:
        return infer_json(url, name, body(metadata), timeout=timeout, auth=auth)
    except InvalidInputError:
        # The endpoint may have been redeployed with another model: retry once with fresh metadata.
        fresh = model_metadata(url, name, refresh=True, auth=auth)
        if fresh == metadata:
            raise
        return infer_json(url, name, body(fresh), timeout=timeout, auth=auth)
