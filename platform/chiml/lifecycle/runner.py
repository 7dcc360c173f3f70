"""The process `chiml train` starts: ``python -m chiml.lifecycle.runner TARGET [ARGS...]``.

chiml created the MLflow run and put everything in the environment; this only runs the
target so that a script behaves exactly as under ``python script.py``. A function target's
numeric return value is logged as the ``objective`` metric.
"""

from __future__ import annotations

import numbers
import sys

from chiml.errors import ChimlError
from chiml.lifecycle import metrics
from chiml.lifecycle.target import resolve


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m chiml.lifecycle.runner TARGET [ARGS...]", file=sys.stderr)
        return 2
    try:
        target = resolve(args[0])
    except ChimlError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = target.invoke(args[1:])
    if isinstance(result, numbers.Real) and not isinstance(result, bool):
        metrics.report(float(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
