"""Opportunistic batching: requests that arrive while the model is busy run as one batch.

A small model costs nearly the same for 16 rows as for one, and at concurrency 16 most of a
batch-1 request's model time is per-call overhead (input validation of the framework, a
DataFrame, a session call). So requests are queued, and the queue is flushed on the next turn
of the event loop: a lone request (concurrency 1) runs at once, with no timer and no added
latency; requests that arrived together (while the previous batch was running) are
concatenated along the batch axis, run once, and each gets its own rows back. This is what
Triton's dynamic batcher and MLServer's adaptive batching do, without their wait window.

Only models that declare themselves row-independent (``ChimlModel.batchable``) are batched,
only requests with the same inputs and per-row shapes and dtypes share a batch, and a batch
whose outputs do not have one row per input row, or that fails, is rerun request by request
so that each request gets its own answer or its own error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("chiml_serving")

Arrays = dict[str, np.ndarray]


class Batcher:
    """Queue requests for ``run`` (arrays -> arrays), merging those that arrive together."""

    def __init__(self, run: Callable[[Arrays], Arrays], max_rows: int) -> None:
        self.run = run
        self.max_rows = max_rows
        self._pending: list[tuple[Arrays, asyncio.Future[Arrays]]] = []
        self._scheduled = False
        #: how many model calls ran more than one request (for tests and the metrics)
        self.merged_calls = 0

    async def submit(self, arrays: Arrays) -> Arrays:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Arrays] = loop.create_future()
        self._pending.append((arrays, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        groups: dict[tuple[Any, ...], list[tuple[Arrays, asyncio.Future[Arrays]]]] = {}
        for item in pending:
            groups.setdefault(_key(item[0]), []).append(item)
        for group in groups.values():
            batch: list[tuple[Arrays, asyncio.Future[Arrays]]] = []
            rows = 0
            for item in group:
                size = _rows(item[0])
                if batch and rows + size > self.max_rows:
                    self._run(batch)
                    batch, rows = [], 0
                batch.append(item)
                rows += size
            self._run(batch)

    def _run(self, batch: list[tuple[Arrays, asyncio.Future[Arrays]]]) -> None:
        if len(batch) == 1:
            self._run_one(*batch[0])
            return
        names = list(batch[0][0])
        sizes = [_rows(arrays) for arrays, _ in batch]
        merged = {name: np.concatenate([arrays[name] for arrays, _ in batch]) for name in names}
        try:
            results = self.run(merged)
        except Exception:
            results = None  # one request may be at fault: each gets its own answer below
        total = sum(sizes)
        if results is None or not all(value.ndim >= 1 and len(value) == total for value in results.values()):
            for arrays, future in batch:
                self._run_one(arrays, future)
            return
        self.merged_calls += 1
        offsets = np.cumsum(sizes)[:-1]
        parts = {name: np.split(value, offsets) for name, value in results.items()}
        for index, (_, future) in enumerate(batch):
            if not future.done():
                future.set_result({name: pieces[index] for name, pieces in parts.items()})

    def _run_one(self, arrays: Arrays, future: asyncio.Future[Arrays]) -> None:
        if future.done():  # the client went away
            return
        try:
            future.set_result(self.run(arrays))
        except Exception as err:
            future.set_exception(err)


def _rows(arrays: Arrays) -> int:
    return int(next(iter(arrays.values())).shape[0])


def _key(arrays: Arrays) -> tuple[Any, ...]:
    return tuple((name, array.dtype.str, array.shape[1:]) for name, array in sorted(arrays.items()))
