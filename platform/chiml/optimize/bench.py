"""Run one benchmark worker per runtime, each in its own process with a stated thread count.

Threads: every runtime (and the original framework) gets the same intra-op thread count,
by default the number of cores this process may use, so the speedups compare like with like.
The worker is bounded twice: per batch by a time budget and iteration cap, and as a whole by a
wall-clock timeout after which it is killed and the candidate rejected.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1, 8, 64)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class BenchSettings:
    batches: tuple[int, ...] = BATCHES
    threads: int = field(default_factory=available_cores)
    warmup_s: float = 0.2
    budget_s: float = 1.0
    min_iters: int = 20
    max_iters: int = 20000
    timeout_s: float = 300.0


@dataclass
class WorkerResult:
    ok: bool
    timings: dict[int, dict[str, float]] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    stage: str | None = None
    error: str | None = None
    load_s: float | None = None


def worker_settings(threads: int) -> dict[str, str]:
    """What every benchmark worker's environment sets: the thread count, no warnings."""
    env = {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "CHIML_RUNTIME_THREADS")}
    env["PYTHONWARNINGS"] = "ignore"
    return env


def thread_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(worker_settings(threads))
    return env


def worker_request(engine: str, model_dir: Path, inputs_npz: Path, workdir: Path, name: str,
                   settings: BenchSettings, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON request of ``chiml_serving.runtimes.worker``: where its inputs are and its results go."""
    return {
        "engine": engine, "model_dir": str(model_dir), "threads": settings.threads, "options": options or {},
        "inputs": str(inputs_npz), "gate_outputs": str(workdir / f"{name}.outputs.npz"),
        "result": str(workdir / f"{name}.result.json"), "batches": list(settings.batches),
        "warmup_s": settings.warmup_s, "budget_s": settings.budget_s, "min_iters": settings.min_iters,
        "max_iters": settings.max_iters,
    }


def read_result(result_path: Path, outputs_path: Path) -> WorkerResult | None:
    """A worker's result files as a WorkerResult; None when the worker wrote no result."""
    if not result_path.is_file():
        return None
    data = json.loads(result_path.read_text(encoding="utf-8"))
    if not data["ok"]:
        return WorkerResult(False, stage=data.get("stage"), error=data.get("error"))
    with np.load(outputs_path, allow_pickle=False) as saved:
        outputs = {key: saved[key] for key in saved.files}
    timings = {int(batch): values for batch, values in data["timings"].items()}
    return WorkerResult(True, timings=timings, outputs=outputs, load_s=data.get("load_s"))


def run_worker(python: str, engine: str, model_dir: Path, inputs_npz: Path, workdir: Path, name: str,
               settings: BenchSettings, options: dict[str, Any] | None = None) -> WorkerResult:
    """Run ``chiml_serving.runtimes.worker`` for one engine; never raises for the engine's failures."""
    workdir.mkdir(parents=True, exist_ok=True)
    request = worker_request(engine, model_dir, inputs_npz, workdir, name, settings, options)
    request_path = workdir / f"{name}.request.json"
    request_path.write_text(json.dumps(request), encoding="utf-8")
    log_path = workdir / f"{name}.log"
    Path(request["result"]).unlink(missing_ok=True)
    try:
        with log_path.open("w", encoding="utf-8") as log:
            proc = subprocess.run([python, "-m", "chiml_serving.runtimes.worker", str(request_path)],
                                  stdout=log, stderr=subprocess.STDOUT, env=thread_env(settings.threads),
                                  timeout=settings.timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return WorkerResult(False, stage="bench", error=f"timed out after {settings.timeout_s:.0f}s")
    except OSError as err:
        return WorkerResult(False, stage="load", error=f"cannot start {python}: {err}")
    result = read_result(Path(request["result"]), Path(request["gate_outputs"]))
    if result is None:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        return WorkerResult(False, stage="load",
                            error=f"worker exited with {proc.returncode}: {' '.join(tail) or 'no output'}")
    return result
