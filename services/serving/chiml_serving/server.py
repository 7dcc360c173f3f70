"""Run one chiml model: the REST app on uvicorn, optionally kserve's V2 gRPC servicer beside it.

* REST binds the requested host (127.0.0.1 on the local profile, 0.0.0.0 in a KServe pod), with
  uvloop and httptools when installed (they come with kserve's ``uvicorn[standard]``), no access
  log by default (one line per request costs more than a small model's inference).
* gRPC (KServe's ``GRPCInferenceService``, kserve's own servicer and DataPlane) starts only when
  a port is given, on the same host, in the same event loop.
* ``workers > 1``: uvicorn's process supervisor runs N copies sharing the listening socket; each
  loads the model itself (:func:`worker_app`), nothing is pickled. The parent loads it once
  first (as kserve's ModelServer does), so a broken artifact fails fast with one clear line
  instead of N crashing workers.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from chiml_serving.app import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_BODY_BYTES, ServingApp
from chiml_serving.base import ChimlModel

log = logging.getLogger("chiml_serving")

#: how a worker process learns what to serve (set by the parent, read by :func:`worker_app`)
WORKER_ENV = "CHIML_SERVING_WORKER"


@dataclass(frozen=True)
class ServeOptions:
    """Everything about one endpoint process except the model."""

    http_port: int
    host: str = "127.0.0.1"
    workers: int = 1
    grpc_port: int | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    access_log: bool = False
    log_level: str = "warning"


def build_app(model: ChimlModel, options: ServeOptions) -> ServingApp:
    """The ASGI app for a loaded model, with the gRPC server tied to its lifespan."""
    start, stop = _grpc_hooks(model, options) if options.grpc_port is not None else (None, None)
    return ServingApp(model, max_body_bytes=options.max_body_bytes, max_batch_rows=options.max_batch_rows,
                      on_startup=start, on_shutdown=stop)


def _grpc_hooks(model: ChimlModel, options: ServeOptions) -> tuple[Callable[[], Awaitable[None]],
                                                                   Callable[[], Awaitable[None]]]:
    servers: list[Any] = []

    async def start() -> None:
        from grpc import aio
        from kserve.model_repository import ModelRepository
        from kserve.protocol.dataplane import DataPlane
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
        from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
        from kserve.protocol.grpc.servicer import InferenceServicer
        from kserve.protocol.model_repository_extension import ModelRepositoryExtension

        repository = ModelRepository()
        repository.update(model)
        dataplane = DataPlane(model_registry=repository)
        # kserve's interceptor maps InvalidInput to INVALID_ARGUMENT, ModelNotFound to NOT_FOUND...
        limits = [("grpc.max_receive_message_length", options.max_body_bytes),
                  ("grpc.max_send_message_length", options.max_body_bytes)]
        server = aio.server(interceptors=(ExceptionToStatusInterceptor(),), options=limits)
        servicer = InferenceServicer(dataplane, ModelRepositoryExtension(model_registry=repository))
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        host = "[::]" if options.host in ("0.0.0.0", "::") else options.host
        server.add_insecure_port(f"{host}:{options.grpc_port}")
        await server.start()
        servers.append(server)

    async def stop() -> None:
        for server in servers:
            await server.stop(grace=5)

    return start, stop


def _uvicorn_config(app: Any, options: ServeOptions, **extra: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app, host=options.host, port=options.http_port, workers=options.workers, log_config=None,
        log_level=options.log_level, access_log=options.access_log, loop="auto", http="auto",
        lifespan="on" if options.grpc_port is not None else "off", timeout_keep_alive=65,
        timeout_graceful_shutdown=30, **extra,
    )


def serve(model: ChimlModel, options: ServeOptions, *, runtime: str | None = None) -> None:
    """Load ``model`` and serve it until SIGTERM/SIGINT (blocks)."""
    import uvicorn

    model.load()
    print(
        f"chiml-serving: {model.runtime} model {model.name!r} loaded from {model.model_dir}; "
        f"serving http://{options.host}:{options.http_port} with {options.workers} worker(s)"
        + (f", gRPC on port {options.grpc_port}" if options.grpc_port is not None else ""),
        flush=True,
    )
    if options.workers == 1:
        uvicorn.Server(_uvicorn_config(build_app(model, options), options)).run()
        return
    os.environ[WORKER_ENV] = json.dumps({"runtime": runtime or model.runtime, "name": model.name,
                                         "model_dir": str(model.model_dir), "options": asdict(options)})
    config = _uvicorn_config("chiml_serving.server:worker_app", options, factory=True)
    from uvicorn.supervisors import Multiprocess

    Multiprocess(config, sockets=[config.bind_socket()]).run()


def worker_app() -> ServingApp:
    """The app of one ``--workers`` process: load the model named in :data:`WORKER_ENV`."""
    from chiml_serving.registry import runtime_class

    spec = json.loads(os.environ[WORKER_ENV])
    model = runtime_class(spec["runtime"])(spec["name"], spec["model_dir"])
    model.load()
    return build_app(model, ServeOptions(**spec["options"]))
