"""Tuning scaling: trials per minute of `chiml tune` with 1 and with 2 workers.

Goal: on a CPU-bound objective, 2 workers give >= 1.8x the trials per minute of 1.
Runs the real path (a local platform on a temp home and free ports, the journal storage,
an MLflow child run per trial) with a pure-Python objective of fixed cost, single-threaded
by construction. Throughput is measured over the trials themselves (first trial start to
last trial end, from the study's own timestamps) so worker start-up is not counted; the
end-to-end wall time of each `tune` call is reported too.
Usage: python benchmarks/bench_tuning.py [--trials 12] [--work 60000000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import write_local_config

GOAL_SPEEDUP = 1.8
RESULTS = Path(__file__).resolve().parent / "results" / "tuning.json"

OBJECTIVE = """
from chiml import tracking as ct

p = ct.params(x=ct.float_range(-3.0, 3.0), work={work})
total = 0
for i in range(p["work"]):  # fixed CPU cost, one thread, whatever x is
    total += i % 7
ct.log_metrics(step=0, loss=(p["x"] - 1.0) ** 2 + total * 0.0)
"""


def measure(platform: object, script: Path, workers: int, trials: int) -> dict:
    import optuna

    from chiml.lifecycle.storage import open_storage
    from chiml.lifecycle.tune import run_study

    name = f"bench-{workers}w-{int(time.time())}"
    started = time.perf_counter()
    result = run_study(platform, str(script), trials=trials, workers=workers, study_name=name, metric="loss",
                       pruner="none", seed=0)
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=name, storage=open_storage(platform.optuna_storage))
    done = [t for t in study.trials if t.datetime_complete is not None]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    per_trial = sorted((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    return {
        "workers": workers,
        "trials": result.n_complete,
        "trials_per_min": round(60 * len(done) / span, 2),
        "median_trial_s": round(per_trial[len(per_trial) // 2], 2),
        "wall_s": round(wall, 1),
    }


def _burn(work: int) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(work):
        total += i % 7
    return time.perf_counter() - started


def machine_ceiling(work: int, trials: int) -> float:
    """The same loop in 1 vs 2 plain processes, no chiml: the speed-up this machine allows now.

    On a shared or throttled machine this is below 2; chiml's own overhead is the gap to it.
    """
    from concurrent.futures import ProcessPoolExecutor

    rates = []
    for workers in (1, 2):
        with ProcessPoolExecutor(workers) as pool:
            started = time.perf_counter()
            list(pool.map(_burn, [work] * trials))
            rates.append(trials / (time.perf_counter() - started))
    return rates[1] / rates[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    # ~3 s trials: long enough that per-trial bookkeeping (an MLflow child run, the journal
    # append) is small beside the work, as it is for any real training objective.
    parser.add_argument("--work", type=int, default=60_000_000, help="loop iterations per trial (~1 s per 20M)")
    args = parser.parse_args()
    from chiml import Platform

    with tempfile.TemporaryDirectory(prefix="chiml-bench-tune-") as tmp:
        folder = Path(tmp)
        # MLflow only: the UIs are not used here and would only add noise on a small machine.
        config = write_local_config(folder, services=["mlflow"])
        script = folder / "objective.py"
        script.write_text(OBJECTIVE.format(work=args.work))
        os.environ.pop("CHIML_HOME", None)
        platform = Platform.connect(config=config)
        platform.up()
        try:
            rows = [measure(platform, script, workers, args.trials) for workers in (1, 2)]
        finally:
            platform.down()
    ceiling = machine_ceiling(args.work, args.trials)
    speedup = rows[1]["trials_per_min"] / rows[0]["trials_per_min"]
    print(f"{'workers':>7} {'trials':>6} {'trials/min':>10} {'median trial s':>14} {'wall s':>7}")
    for row in rows:
        print(f"{row['workers']:>7} {row['trials']:>6} {row['trials_per_min']:>10} "
              f"{row['median_trial_s']:>14} {row['wall_s']:>7}")
    verdict = "meets" if speedup >= GOAL_SPEEDUP else "MISSES"
    print(f"speed-up 2 vs 1 worker: {speedup:.2f}x ({verdict} the {GOAL_SPEEDUP}x goal) on {os.cpu_count()} CPUs")
    print(f"same loop in 2 vs 1 plain processes (this machine's ceiling right now): {ceiling:.2f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "tuning", "goal_speedup": GOAL_SPEEDUP, "speedup": round(speedup, 2),
        "meets_goal": speedup >= GOAL_SPEEDUP, "machine_ceiling": round(ceiling, 2), "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "trials": args.trials, "work": args.work, "rows": rows,
    }, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
