"""``python -m chiml_serving``: serve one model with a chiml runtime.

Locally (under chiml's supervisor)::

    python -m chiml_serving --runtime mlflow --model-name digits --model-dir ~/.chiml/endpoints/digits/model \\
        --http-port 9100 --workers 1 --host 127.0.0.1

In a KServe pod the same entry point runs with ``--model-dir /mnt/models --host 0.0.0.0``; the
underscore spellings KServe's ServingRuntimes pass (``--model_name``, ``--model_dir``,
``--http_port``) are accepted too, and flags this entry point does not know are ignored.
"""

from __future__ import annotations

import argparse
import os
import sys

from chiml_contract.runtimes import RUNTIMES

#: environment fallbacks, so a ServingRuntime or supervisord program can set them without flags
MAX_BODY_ENV = "CHIML_SERVING_MAX_BODY_MB"
MAX_BATCH_ENV = "CHIML_SERVING_MAX_BATCH"
LOG_LEVEL_ENV = "KSERVE_LOGLEVEL"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chiml_serving", description="Serve one model over KServe V1/V2.")
    parser.add_argument("--runtime", required=True, choices=sorted(RUNTIMES), help="which runtime serves the model")
    parser.add_argument(
        "--model-name", "--model_name", dest="model_name", required=True, help="name in /v2/models/<name>"
    )
    parser.add_argument("--model-dir", "--model_dir", dest="model_dir", required=True, help="artifact directory")
    parser.add_argument("--http-port", "--http_port", dest="http_port", type=int, default=8080, help="REST port")
    parser.add_argument(
        "--grpc-port", "--grpc_port", dest="grpc_port", type=int, default=None,
        help="V2 gRPC port on the same host (default: gRPC off)",
    )
    parser.add_argument("--workers", type=int, default=1, help="server processes (each loads the model)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 in a pod)")
    parser.add_argument(
        "--max-body-mb", "--max_body_mb", dest="max_body_mb", type=float,
        default=float(os.environ.get(MAX_BODY_ENV) or 64),
        help=f"largest request body in MiB; larger ones get 413 (default 64, or ${MAX_BODY_ENV})",
    )
    parser.add_argument(
        "--max-batch-size", "--max_batch_size", dest="max_batch_size", type=int,
        default=int(os.environ.get(MAX_BATCH_ENV) or 64),
        help="most rows one model call merges from requests that arrive together; 0 or 1: no merging "
             f"(default 64, or ${MAX_BATCH_ENV}; only for row-independent models)",
    )
    parser.add_argument("--access-log", action="store_true", help="log one line per request")
    parser.add_argument(
        "--log-level", default=(os.environ.get(LOG_LEVEL_ENV) or "WARNING").lower(),
        choices=["critical", "error", "warning", "info", "debug"],
        help=f"server log level (default WARNING, or ${LOG_LEVEL_ENV})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args, _unknown = build_parser().parse_known_args(argv)  # tolerate kserve's own flags
    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    if args.max_body_mb <= 0:
        print("--max-body-mb must be positive", file=sys.stderr)
        return 2
    import logging

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from chiml_serving.registry import UnknownRuntime, runtime_class

    try:
        cls = runtime_class(args.runtime)
    except UnknownRuntime as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from chiml_serving.server import ServeOptions, serve

    options = ServeOptions(http_port=args.http_port, host=args.host, workers=args.workers, grpc_port=args.grpc_port,
                           max_body_bytes=int(args.max_body_mb * 2**20),
                           max_batch_rows=args.max_batch_size, access_log=args.access_log,
                           log_level=args.log_level)
    model = cls(args.model_name, args.model_dir)
    try:
        serve(model, options, runtime=args.runtime)
    except Exception as err:
        # One line the platform shows the user (it tails this log); the traceback stays above it.
        import traceback

        traceback.print_exc()
        print(f"chiml-serving: cannot serve {args.model_name!r} from {args.model_dir}: {type(err).__name__}: {err}",
              file=sys.stderr, flush=True)
        return 1
    return 0


# The guard matters: with --workers N uvicorn spawns processes that re-import this module.
if __name__ == "__main__":
    sys.exit(main())
