"""Build and run the kserve ModelServer for one chiml model.

Two kserve 0.21 defaults do not suit a laptop: REST binds 0.0.0.0 (uvicorn's host is hard-coded
in ``RESTServer``) and gRPC starts on ``[::]:8081`` (so a second endpoint would collide). chiml
binds REST to the requested host (127.0.0.1 on the local profile, 0.0.0.0 in a KServe pod) and
starts gRPC only when a port is given.

kserve's metadata answer has ``"platform": ""``; :class:`ChimlDataPlane` fills it with the
model's runtime so that ``GET /v2/models/<name>`` says what serves the endpoint.
"""

from __future__ import annotations

import functools
import logging
import warnings
from http import HTTPStatus
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest import server as rest_server

from chiml_serving.base import ChimlModel

log = logging.getLogger("chiml_serving")


class ChimlDataPlane(DataPlane):
    """kserve's DataPlane, with the runtime name as the model metadata's ``platform``."""

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        metadata = await super().model_metadata(model_name)
        model = self.get_model_from_registry(model_name)
        metadata["platform"] = getattr(model, "runtime", "") or ""
        return metadata


def describe_validation_error(err: RequestValidationError) -> str:
    """One line for FastAPI's body validation error (malformed JSON, missing fields...)."""
    errors = [e for e in err.errors() if e.get("type") != "bytes_type"]  # the Union's bytes arm
    if not errors:
        return "request body is not a V2 inference request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "decode error")
        return f"request body is not valid JSON: {reason} at character {first['loc'][-1]}"
    location = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "InferenceRequest"))
    return f"invalid inference request: {location or 'body'}: {first.get('msg', 'invalid')}"


async def _validation_error_handler(_request: Any, err: RequestValidationError) -> JSONResponse:
    # FastAPI answers 422 with a nested "detail" list; V2 clients expect 400 {"error": "..."}.
    return JSONResponse(status_code=HTTPStatus.BAD_REQUEST, content={"error": describe_validation_error(err)})


async def _invalid_input_handler(_request: Any, err: InvalidInput) -> JSONResponse:
    # kserve's own handler logs a full traceback at ERROR for every bad request; a client's
    # mistake is one INFO line here.
    message = str(err)
    if message.startswith("Unrecognized request format: "):  # kserve's words for undecodable JSON
        message = "request body is not valid JSON: " + message.removeprefix("Unrecognized request format: ")
    log.info("bad request: %s", message)
    return JSONResponse(status_code=HTTPStatus.BAD_REQUEST, content={"error": message})


def _install_error_handlers() -> None:
    """Patch kserve's RESTServer (on the class) to add chiml's 400 handlers to its app.

    Runs when this module is imported, which also happens in every ``--workers`` process:
    they unpickle :class:`ChimlDataPlane` (so import this module) before building the app.
    """
    cls = rest_server.RESTServer
    original = getattr(cls._add_exception_handlers, "__wrapped__", cls._add_exception_handlers)

    @functools.wraps(original)
    def _add_exception_handlers(self: Any, app: Any) -> None:
        original(self, app)
        app.add_exception_handler(RequestValidationError, _validation_error_handler)
        app.add_exception_handler(InvalidInput, _invalid_input_handler)

    cls._add_exception_handlers = _add_exception_handlers  # type: ignore[method-assign]


def bind_rest_host(host: str) -> None:
    """Make every kserve RESTServer created from now on listen on ``host``.

    The multi-worker server binds its socket in the parent from the same uvicorn config and
    hands the socket to its workers, so patching the parent is enough.
    """
    cls = rest_server.RESTServer
    original = getattr(cls.__init__, "__wrapped__", cls.__init__)

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.config.host = host

    cls.__init__ = __init__  # type: ignore[method-assign]


_install_error_handlers()
# kserve 0.21 still uses ORJSONResponse, which FastAPI now deprecates with a warning per request.
warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")


def serve(
    model: ChimlModel,
    http_port: int,
    host: str = "127.0.0.1",
    workers: int = 1,
    grpc_port: int | None = None,
) -> None:
    """Load ``model`` and serve it until SIGTERM/SIGINT (blocks)."""
    from kserve import ModelServer

    bind_rest_host(host)
    model.load()
    print(
        f"chiml-serving: {model.runtime} model {model.name!r} loaded from {model.model_dir}; "
        f"serving http://{host}:{http_port} with {workers} worker(s)",
        flush=True,
    )
    server = ModelServer(
        http_port=http_port,
        grpc_port=grpc_port or 0,
        enable_grpc=grpc_port is not None,
        workers=workers,
        # One line per request is noise on a laptop and costs latency; uvicorn access logs stay.
        enable_latency_logging=False,
    )
    # RESTServer is built in start() from server.dataplane: swap in ours before that.
    server.dataplane = ChimlDataPlane(model_registry=server.registered_models)
    server.start([model])
