"""Local autoscaling: one supervised ``python -m chiml.serving.autoscale NAME`` per autoscaled endpoint.

It does what KServe's autoscalers do on a cluster, with the same knobs (``minReplicas``,
``maxReplicas``, ``scaleMetric``, ``scaleTarget``):

* ``concurrency``: the requests in flight at the endpoint's front (being served or queued),
  sampled several times per decision, divided by the target per replica (Knative's KPA);
* ``cpu``: the replicas' processes' CPU use in percent of one core, summed, divided by the
  target (the HPA's formula).

Up at once when the wanted count is higher; down only when every wanted count of the last
``serving.scale_down_delay_s`` seconds was lower (the HPA's stabilisation window), so a pause in
traffic does not drop replicas that are needed again a moment later. Each change goes through
the endpoint backend (rolling in or draining out behind the front, under the endpoint's lock)
and is recorded with its reason for ``chiml endpoints describe``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from chiml.serving.backend import Scaling

log = logging.getLogger("chiml.autoscale")
SAMPLES_PER_DECISION = 4


def wanted(total: float, scaling: Scaling, target: float) -> int:
    """Replicas needed so that each carries at most ``target`` of ``total``, within the range."""
    count = math.ceil(total / target - 1e-9) if total > 0 else 0
    return min(max(count, scaling.min_replicas), scaling.max_replicas)


@dataclass
class Recommender:
    """Stabilised recommendations: up at once, down once no want of the last ``down_delay_s``
    seconds reached the current count (then to the highest want of that window)."""

    down_delay_s: float
    clock: Callable[[], float] = time.monotonic
    history: deque[tuple[float, int]] = field(default_factory=deque)
    high_at: float | None = None  # when a want last reached the current count

    def reset(self) -> None:
        """After a change: the next scale-down waits a whole delay again."""
        self.history.clear()
        self.high_at = self.clock()

    def recommend(self, current: int, want: int) -> int:
        now = self.clock()
        if self.high_at is None:
            self.high_at = now
        self.history.append((now, want))
        while self.history and self.history[0][0] < now - self.down_delay_s:
            self.history.popleft()
        if want >= current:
            self.high_at = now
            return want
        if now - self.high_at < self.down_delay_s:
            return current
        return max(w for _, w in self.history)


class CpuMeter:
    """CPU use of the replicas' process trees, in percent of one core, between two calls."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def total(self, pids: list[int]) -> float:
        total = 0.0
        seen: set[int] = set()
        for pid in pids:
            try:
                root = psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in tree:
                seen.add(proc.pid)
                known = self._procs.setdefault(proc.pid, proc)
                with contextlib.suppress(psutil.Error):
                    total += known.cpu_percent(interval=None)  # 0.0 on the first call
        for pid in set(self._procs) - seen:
            del self._procs[pid]
        return total


def _target(scaling: Scaling) -> float:
    from chiml.serving.local import DEFAULT_TARGETS

    return float(scaling.target or DEFAULT_TARGETS[scaling.metric or "concurrency"])


def run(backend: Any, name: str, *, stop: Callable[[], bool] = lambda: False) -> None:
    """The loop (until the endpoint is gone or ``stop()``); ``backend`` is a LocalEndpoints."""
    from filelock import Timeout

    from chiml.errors import ChimlError, NotFoundError
    from chiml.serving.local import _replicas, _scaling, program_name

    settings = backend.settings
    recommender = Recommender(settings.scale_down_delay_s)
    cpu = CpuMeter()
    while not stop():
        samples: list[float] = []
        for _ in range(SAMPLES_PER_DECISION):
            time.sleep(settings.autoscale_interval_s / SAMPLES_PER_DECISION)
            with contextlib.suppress(ChimlError):
                samples.append(backend._front_api(name).stats().in_flight)
        try:
            record = backend._record(name)
        except NotFoundError:
            log.info("endpoint %s is gone: stopping", name)
            return
        scaling = _scaling(record)
        if not scaling.autoscaled or record.get("status") != "deployed":
            continue
        current = len(_replicas(record))
        if scaling.metric == "cpu":
            info = backend.supervisor.all_info()
            pids = [(info.get(program_name(name, r["id"])) or {}).get("pid") or 0 for r in _replicas(record)]
            observed, unit = cpu.total([pid for pid in pids if pid]), "% CPU"
        else:
            observed, unit = (sum(samples) / len(samples) if samples else 0.0), " requests in flight"
        target = _target(scaling)
        want = wanted(observed, scaling, target)
        decision = recommender.recommend(current, want)
        if decision == current:
            continue
        per_replica = observed / max(current, 1)
        why = (f"{observed:.1f}{unit} over {current} replica(s) = {per_replica:.1f} per replica, "
               f"target {target:g}: want {want}")
        try:
            with backend.lock(name, blocking=False):
                log.info("endpoint %s: %d -> %d (%s)", name, current, decision, why)
                backend.autoscale_to(name, decision, why, progress=log.info)
        except Timeout:
            log.info("endpoint %s is being changed: skipping this decision", name)
        except ChimlError as err:
            log.warning("endpoint %s: scaling to %d failed: %s", name, decision, err)
        recommender.reset()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chiml.serving.autoscale", description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--config")
    parser.add_argument("name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.environ["CHIML_HOME"] = args.home
    from chiml.config import load_config
    from chiml.profiles.local import LocalProfile
    from chiml.serving.local import LocalEndpoints

    backend = LocalEndpoints(LocalProfile(load_config(args.config, profile="local")))
    run(backend, args.name)


if __name__ == "__main__":
    main()
