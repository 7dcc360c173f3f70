"""The endpoint's HTTP application: KServe's V2 and V1 REST protocol as a plain ASGI app.

Why not kserve's ``ModelServer`` REST stack: profiled under load (py-spy, see docs/serving.md)
a batch-1 request spent most of its time outside the model, in FastAPI's routing, dependency
and pydantic validation of ``InferenceRequest``, kserve's conversions ``InferenceRequest`` ->
``InferRequest`` -> ``InferResponse`` -> ``InferenceResponse``, the timing middleware and a
log line per request. This app keeps the same routes, status codes and bodies (KServe's
health checks and ingress use them) and does only what a request needs: one orjson parse, a
check of each tensor against the model's declared spec, the model, one orjson dump. It runs
on uvicorn (uvloop + httptools where installed), and the model is still a ``kserve.Model``
(:class:`~chiml_serving.base.ChimlModel`): kserve's own ``ModelServer`` and its gRPC servicer
can serve the same object.

Routes: ``/``, ``/v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models``,
``/v2/models/{name}``, ``/v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``,
``/v1/models``, ``/v1/models/{name}``, ``POST /v1/models/{name}:predict``, ``/metrics``,
``/openapi.json``. Errors are ``{"error": "<one line>"}`` with 400 (bad request), 404
(unknown model or route), 405, 413 (body above ``max_body_bytes``), 503 (model not ready) or
500 (the model itself failed).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, ClassVar

import orjson
from kserve.errors import InvalidInput

from chiml_serving import codec
from chiml_serving.base import ChimlModel
from chiml_serving.batching import Batcher
from chiml_serving.metrics import StageTimer, exposition

log = logging.getLogger("chiml_serving")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: the default largest request body (Triton's default HTTP input limit is the same)
DEFAULT_MAX_BODY_BYTES = 64 * 2**20
#: the default most rows one batched model call takes (see chiml_serving.batching)
DEFAULT_MAX_BATCH_ROWS = 64
JSON = b"application/json"
_MODEL_ROUTE = re.compile(r"^/v([12])/models/([^/:]+)(/ready|/infer|:predict)?$")
_ACTIONS = {"1": ("", ":predict"), "2": ("", "/ready", "/infer")}


class HTTPError(Exception):
    """An answer other than 200: status and one line for ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ServingApp:
    """ASGI application serving one :class:`ChimlModel` (see the module docstring)."""

    def __init__(self, model: ChimlModel, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS, on_startup: Callable[[], Awaitable[None]] | None = None,
                 on_shutdown: Callable[[], Awaitable[None]] | None = None) -> None:
        self.model = model
        self.max_body_bytes = max_body_bytes
        self.batcher = Batcher(model.infer_arrays, max_batch_rows) if model.batchable and max_batch_rows > 1 else None
        self.on_startup, self.on_shutdown = on_startup, on_shutdown
        self.v2_timer = StageTimer(model.name, "v2")
        self.v1_timer = StageTimer(model.name, "v1")
        self._openapi: bytes | None = None

    # ------------------------------------------------------------------ ASGI entry point
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.on_startup is not None:
                        await self.on_startup()
                except Exception as err:
                    await send({"type": "lifespan.startup.failed", "message": str(err)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.on_shutdown is not None:
                    await self.on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        try:
            match = _MODEL_ROUTE.match(path)
            if match is not None:
                version, name, action = match.groups()
                await self._model_route(version, name, action or "", method, scope, receive, send)
                return
            handler = self._plain_routes.get(path)
            if handler is None:
                raise HTTPError(404, f"no route {path}")
            if method not in ("GET", "HEAD"):
                raise HTTPError(405, f"{method} is not allowed on {path}")
            await handler(self, scope, send)
        except HTTPError as err:
            await _answer(send, err.status, orjson.dumps({"error": err.message}))

    async def _model_route(self, version: str, name: str, action: str, method: str, scope: Scope,
                           receive: Receive, send: Send) -> None:
        if action not in _ACTIONS[version]:
            raise HTTPError(404, f"no route {scope['path']}")
        if name != self.model.name:
            raise HTTPError(404, f"Model with name {name} does not exist.")
        post = action in ("/infer", ":predict")
        allowed = ("POST",) if post else ("GET", "HEAD")
        if method not in allowed:
            raise HTTPError(405, f"{method} is not allowed on {scope['path']}")
        if action == "/ready":
            if not self.model.ready:
                raise HTTPError(503, f"Model with name {name} is not ready.")
            await _answer(send, 200, orjson.dumps({"name": name, "ready": True}))
        elif action == "/infer":
            await self._infer_v2(scope, receive, send)
        elif action == ":predict":
            await self._predict_v1(scope, receive, send)
        elif version == "2":
            await _answer(send, 200, orjson.dumps(self.model_metadata()))
        else:
            await _answer(send, 200, orjson.dumps({"name": name, "ready": bool(self.model.ready)}))

    # ------------------------------------------------------------------ inference
    async def _infer_v2(self, scope: Scope, receive: Receive, send: Send) -> None:
        def decode(body: bytes) -> tuple[dict[str, Any], codec.Decoded]:
            decoded = codec.decode_v2(body, self.model.inputs, self.model.name,
                                      _header(scope, b"inference-header-content-length"))
            return decoded.arrays, decoded

        def encode(results: dict[str, Any], decoded: codec.Decoded) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
            payload, json_length = codec.encode_v2(self.model.name, results, decoded)
            if json_length is None:
                return payload, JSON, []
            return payload, b"application/octet-stream", [(b"inference-header-content-length",
                                                           str(json_length).encode())]

        await self._inference(self.v2_timer, scope, receive, send, decode, encode)

    async def _predict_v1(self, scope: Scope, receive: Receive, send: Send) -> None:
        def decode(body: bytes) -> tuple[dict[str, Any], None]:
            return codec.decode_v1(codec.loads(body), self.model.inputs, self.model.name), None

        def encode(results: dict[str, Any], _context: None) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
            return codec.encode_v1(results), JSON, []

        await self._inference(self.v1_timer, scope, receive, send, decode, encode)

    async def _inference(self, timer: StageTimer, scope: Scope, receive: Receive, send: Send,
                         decode: Callable[[bytes], tuple[dict[str, Any], Any]],
                         encode: Callable[[dict[str, Any], Any], tuple[bytes, bytes, list[tuple[bytes, bytes]]]]
                         ) -> None:
        """One inference request of either protocol: body -> arrays -> model -> body, timed by stage."""
        started = time.perf_counter()
        status = 200
        try:
            body = await self._body(scope, receive)
            self._require_ready()
            arrays, context = decode(body)
            decoded_at = time.perf_counter()
            results = await self._predict(arrays)
            predicted_at = time.perf_counter()
            payload, content_type, headers = encode(results, context)
            timer.decode.observe(decoded_at - started)
            timer.predict.observe(predicted_at - decoded_at)
            timer.encode.observe(time.perf_counter() - predicted_at)
        except InvalidInput as err:
            status = 400
            await _answer(send, 400, orjson.dumps({"error": str(err)}))
            log.info("bad request: %s", err)
        except HTTPError as err:
            status = err.status
            await _answer(send, err.status, orjson.dumps({"error": err.message}))
        else:
            await _answer(send, 200, payload, content_type, headers)
        finally:
            timer.total.observe(time.perf_counter() - started)
            timer.count(status)

    async def _predict(self, arrays: dict[str, Any]) -> dict[str, Any]:
        # On the event loop, no thread hop: inference is CPU-bound and short, and one model
        # per process gains nothing from a pool. Requests that arrive together share a call.
        try:
            if self.batcher is not None:
                return await self.batcher.submit(arrays)
            return self.model.infer_arrays(arrays)
        except InvalidInput:
            raise
        except Exception as err:
            log.exception("model %s failed on a request", self.model.name)
            raise HTTPError(500, f"inference failed: {type(err).__name__}: {err}") from None

    def _require_ready(self) -> None:
        if not self.model.ready:
            raise HTTPError(503, f"Model with name {self.model.name} is not ready.")

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        """The request body, refused with 413 as soon as it is known to exceed the limit."""
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise HTTPError(413, f"request body of {declared} bytes exceeds the limit of {self.max_body_bytes}")
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            return body  # the common case: one message
        chunks, size = [body], len(body)
        while message.get("more_body"):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise HTTPError(413, f"request body exceeds the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    # ------------------------------------------------------------------ metadata and health
    def model_metadata(self) -> dict[str, Any]:
        return {
            "name": self.model.name,
            "versions": [],
            "platform": self.model.runtime,
            "inputs": self.model.get_input_types(),
            "outputs": self.model.get_output_types(),
        }

    async def _root(self, _scope: Scope, send: Send) -> None:
        await _answer(send, 200, b'{"status":"alive"}')

    async def _server_metadata(self, _scope: Scope, send: Send) -> None:
        from chiml_serving import __version__

        await _answer(send, 200, orjson.dumps({"name": "chiml-serving", "version": __version__,
                                               "extensions": ["binary_tensor_data"]}))

    async def _live(self, _scope: Scope, send: Send) -> None:
        await _answer(send, 200, b'{"live":true}')

    async def _ready(self, _scope: Scope, send: Send) -> None:
        if not self.model.ready:
            raise HTTPError(503, "Server is not ready.")
        await _answer(send, 200, b'{"ready":true}')

    async def _models_v2(self, _scope: Scope, send: Send) -> None:
        await _answer(send, 200, orjson.dumps({"models": [self.model.name]}))

    async def _models_v1(self, _scope: Scope, send: Send) -> None:
        await _answer(send, 200, orjson.dumps({"models": [self.model.name]}))

    async def _metrics(self, scope: Scope, send: Send) -> None:
        body, content_type = exposition(_header(scope, b"accept"))
        await _answer(send, 200, body, content_type.encode())

    async def _openapi_document(self, _scope: Scope, send: Send) -> None:
        if self._openapi is None:
            self._openapi = resources.files("chiml_serving").joinpath("openapi.json").read_bytes()
        await _answer(send, 200, self._openapi)

    _plain_routes: ClassVar[dict[str, Callable[[ServingApp, Scope, Send], Awaitable[None]]]] = {
        "/": _root,
        "/v2": _server_metadata,
        "/v2/health/live": _live,
        "/v2/health/ready": _ready,
        "/v2/models": _models_v2,
        "/v1/models": _models_v1,
        "/metrics": _metrics,
        "/openapi.json": _openapi_document,
    }


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _answer(send: Send, status: int, body: bytes, content_type: bytes = JSON,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
