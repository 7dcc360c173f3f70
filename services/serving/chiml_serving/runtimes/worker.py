"""Benchmark worker: one runtime, one process, one thread setting.

``python -m chiml_serving.runtimes.worker REQUEST.json`` loads an engine, runs the held-out
inputs once (their outputs go to the correctness gate), then times each batch size: warm-up
first, then a loop bounded by both a time budget and an iteration cap. Running every runtime in
its own process keeps their thread pools and allocators from disturbing each other, and lets
the DeepSparse worker run in DeepSparse's own environment. Standard library and numpy only.

The result (or the stage and message of a failure) is written as JSON; the parent reads it.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

GATE_CHUNK = 64


def _rows(arrays: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """A batch of ``batch`` rows cycled from the held-out inputs."""
    first = next(iter(arrays.values()))
    index = np.arange(batch) % first.shape[0]
    return {name: np.ascontiguousarray(array[index]) for name, array in arrays.items()}


def _time(engine: Any, feeds: dict[str, np.ndarray], warmup_s: float, budget_s: float,
          min_iters: int, max_iters: int) -> dict[str, float]:
    deadline = time.perf_counter() + warmup_s
    engine.run(feeds)
    while time.perf_counter() < deadline:
        engine.run(feeds)
    samples: list[float] = []
    stop = time.perf_counter() + budget_s
    while len(samples) < max_iters and (len(samples) < min_iters or time.perf_counter() < stop):
        start = time.perf_counter_ns()
        engine.run(feeds)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    times = np.asarray(samples)
    batch = next(iter(feeds.values())).shape[0]
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "mean_ms": float(times.mean()),
        "iters": len(samples),
        "throughput": float(batch / (times.mean() / 1e3)),  # samples per second
    }


def run(request: dict[str, Any]) -> dict[str, Any]:
    from chiml_serving.runtimes import import_object

    stage = "load"
    try:
        with np.load(request["inputs"]) as data:
            inputs = {name: data[name] for name in data.files}
        started = time.perf_counter()
        engine = import_object(request["engine"])(request["model_dir"], threads=request.get("threads"),
                                                  options=request.get("options") or {})
        load_s = time.perf_counter() - started

        stage = "gate"
        count = next(iter(inputs.values())).shape[0]
        chunks: list[dict[str, np.ndarray]] = []
        for low in range(0, count, GATE_CHUNK):
            chunk = {name: array[low:low + GATE_CHUNK] for name, array in inputs.items()}
            chunks.append({name: np.asarray(value) for name, value in engine.infer(chunk).items()})
        outputs = {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
        np.savez(request["gate_outputs"], **outputs)  # type: ignore[arg-type]  # numpy types **kwds as allow_pickle

        stage = "bench"
        feeds_by_batch = {}
        for batch in request["batches"]:
            raw = _rows(inputs, int(batch))
            coerce = getattr(engine, "spec", None)
            if coerce is not None:
                from chiml_serving.runtimes.engine import coerce_inputs

                raw = coerce_inputs(engine.spec, raw)
            feeds_by_batch[int(batch)] = raw
        timings = {
            str(batch): _time(engine, feeds, request.get("warmup_s", 0.2), request.get("budget_s", 1.0),
                              request.get("min_iters", 20), request.get("max_iters", 20000))
            for batch, feeds in feeds_by_batch.items()
        }
        return {"ok": True, "load_s": load_s, "timings": timings}
    except Exception as err:
        last = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
        where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
        message = " ".join(str(err).split()) or err.__class__.__name__
        return {"ok": False, "stage": stage, "error": f"{err.__class__.__name__}: {message}"[:2000],
                "where": where}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m chiml_serving.runtimes.worker REQUEST.json", file=sys.stderr)
        return 2
    request = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    result = run(request)
    Path(request["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
