"""A bounded HTTP load: N requests at concurrency C with httpx's async client (loopback only)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np


@dataclass
class LoadResult:
    """What a load run saw: per-request latencies (ms) of the answers and every error by kind."""

    requests: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> str:
        rate = self.requests / self.seconds if self.seconds else 0.0
        errors = f"{self.error_count} errors" + (f" {dict(self.errors)}" if self.errors else "")
        return (f"{self.requests} requests, {errors}, p50 {self.percentile(50):.1f} ms, "
                f"p99 {self.percentile(99):.1f} ms, {rate:.0f} req/s")


def run_load(url: str, body: dict[str, Any], requests: int, concurrency: int,
             keep_going: Callable[[], bool] = lambda: False, max_requests: int | None = None,
             on_progress: Callable[[int], None] | None = None, timeout_s: float = 30.0) -> LoadResult:
    """POST ``body`` to ``url`` ``requests`` times (more while ``keep_going()``, up to ``max_requests``)."""
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load tests target loopback only, not {host}")
    limit = max_requests or requests
    result = LoadResult()
    issued = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < limit and (issued < requests or keep_going()):
            issued += 1
            start = time.perf_counter()
            try:
                response = await client.post(url, json=body)
            except httpx.HTTPError as err:
                result.errors[type(err).__name__] += 1
            else:
                if response.status_code == 200:
                    result.latencies_ms.append((time.perf_counter() - start) * 1000)
                else:
                    result.errors[f"HTTP {response.status_code}"] += 1
            result.requests += 1
            if on_progress is not None:
                on_progress(result.requests)

    async def main() -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))

    started = time.perf_counter()
    asyncio.run(main())
    result.seconds = time.perf_counter() - started
    return result


class Background:
    """``run_load`` in a thread, for tests that act while the load runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.done_requests = 0
        self.result: LoadResult | None = None
        self.error: BaseException | None = None

        def progress(count: int) -> None:
            self.done_requests = count

        def target() -> None:
            try:
                self.result = run_load(*args, on_progress=progress, **kwargs)
            except BaseException as err:  # surfaced by join()
                self.error = err

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.done_requests < count:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the load stopped at {self.done_requests} requests")
            time.sleep(0.05)

    def join(self, timeout_s: float = 600.0) -> LoadResult:
        self.thread.join(timeout_s)
        if self.error is not None:
            raise self.error
        assert self.result is not None, "the load did not finish"
        return self.result
