"""Setting environment variables for the length of a block (MLflow reads its options there)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def scoped_environ(values: Mapping[str, str], *, override: bool = True) -> Iterator[None]:
    """Set ``values`` inside the block and restore what was there after it.

    With ``override=False`` a variable the user already set keeps the user's value.
    """
    saved: dict[str, str | None] = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if override or key not in os.environ:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, before in saved.items():
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before
