"""``python -m chiml_serving``: serve one model with a chiml runtime.

Locally (under chiml's supervisor)::

    python -m chiml_serving --runtime mlflow --model-name digits --model-dir ~/.chiml/endpoints/digits/model \
        --http-port 9100 --workers 1 --host 127.0.0.1

In a KServe pod the same entry point runs with ``--model-dir /mnt/models --host 0.0.0.0``; the
underscore spellings KServe's ServingRuntimes pass (``--model_name``, ``--model_dir``,
``--http_port``) are accepted too.
"""

from __future__ import annotations

import argparse
import sys

from chiml_serving.registry import RUNTIMES, UnknownRuntime, runtime_class


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chiml_serving", description="Serve one model over KServe V1/V2.")
    parser.add_argument("--runtime", required=True, choices=sorted(RUNTIMES), help="which runtime serves the model")
    parser.add_argument(
        "--model-name", "--model_name", dest="model_name", required=True, help="name in /v2/models/<name>"
    )
    parser.add_argument("--model-dir", "--model_dir", dest="model_dir", required=True, help="artifact directory")
    parser.add_argument("--http-port", "--http_port", dest="http_port", type=int, default=8080, help="REST port")
    parser.add_argument(
        "--grpc-port", "--grpc_port", dest="grpc_port", type=int, default=None, help="gRPC port (default: gRPC off)"
    )
    parser.add_argument("--workers", type=int, default=1, help="server processes (each loads the model)")
    parser.add_argument("--host", default="127.0.0.1", help="REST bind address (0.0.0.0 in a pod)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args, _unknown = build_parser().parse_known_args(argv)  # tolerate kserve's own flags
    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    try:
        cls = runtime_class(args.runtime)
    except UnknownRuntime as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from chiml_serving.server import serve

    model = cls(args.model_name, args.model_dir)
    try:
        serve(model, http_port=args.http_port, host=args.host, workers=args.workers, grpc_port=args.grpc_port)
    except Exception as err:
        # One line the platform shows the user (it tails this log); the traceback stays above it.
        import traceback

        traceback.print_exc()
        print(f"chiml-serving: cannot serve {args.model_name!r} from {args.model_dir}: {type(err).__name__}: {err}",
              file=sys.stderr, flush=True)
        return 1
    return 0


# The guard matters: with --workers N kserve spawns processes that re-import this module.
if __name__ == "__main__":
    sys.exit(main())
