"""Cold and warm `chiml up` to all-healthy, and the platform's total RSS.

Goal: warm up <= 10 s and <= 1.5 GB RSS for all services together.
"cold" = a fresh CHIML_HOME (database creation and migrations included);
"warm" = `up` again after `down` on the same home (the everyday case).
Runs on a temp home and free ports, so it never touches your platform.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import write_local_config

GOAL_WARM_S = 10.0
GOAL_RSS_MB = 1536.0
WARM_ROUNDS = 3


def chiml(*args: str, cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "CHIML_HOME"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "chiml.cli.main", *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def platform_rss_mb(home: Path) -> tuple[float, int]:
    pid = int((home / "supervisor" / "supervisord.pid").read_text())
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs) / 2**20, len(procs)


def run(database: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="chiml-bench-") as tmp:
        cwd = Path(tmp)
        write_local_config(cwd, database=database)
        try:
            cold = chiml("up", cwd=cwd)
            time.sleep(3)  # let services settle before measuring memory
            rss, nprocs = platform_rss_mb(cwd / ".chiml")
            warm = []
            for _ in range(WARM_ROUNDS):
                chiml("down", cwd=cwd)
                warm.append(chiml("up", cwd=cwd))
        finally:
            subprocess.run([sys.executable, "-m", "chiml.cli.main", "down"], cwd=cwd, check=False,
                           stdout=subprocess.DEVNULL)
    return {"database": database, "cold_up_s": round(cold, 2), "warm_up_s": round(statistics.median(warm), 2),
            "warm_runs_s": [round(w, 2) for w in warm], "rss_mb": round(rss, 1), "processes": nprocs}


def main() -> None:
    results = [run("sqlite"), run("postgresql")]
    print(f"{'database':<11} {'cold up':>8} {'warm up':>8} {'RSS MB':>8} {'procs':>6}  goal: warm <= {GOAL_WARM_S}s, "
          f"RSS <= {GOAL_RSS_MB:.0f} MB")
    for r in results:
        ok = r["warm_up_s"] <= GOAL_WARM_S and r["rss_mb"] <= GOAL_RSS_MB
        print(f"{r['database']:<11} {r['cold_up_s']:>7.1f}s {r['warm_up_s']:>7.1f}s {r['rss_mb']:>8.0f} "
              f"{r['processes']:>6}  {'meets goal' if ok else 'MISSES GOAL'}")
    out = Path(__file__).resolve().parent / "results" / "startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"cpu_count": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
