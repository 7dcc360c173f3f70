"""`make bench`: run every benchmarks/bench_*.py as its own process and summarise.

Benchmarks measure speed and memory goals; tests never time anything. Each script prints its
own table and writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    only = set(sys.argv[1:])
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not only or p.stem.removeprefix("bench_") in only)
    failures = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, check=False)
        print(f"--- {script.stem}: exit {result.returncode} in {time.monotonic() - started:.0f}s", flush=True)
        if result.returncode != 0:
            failures.append(script.stem)
    if failures:
        print(f"\nfailed: {', '.join(failures)}")
        return 1
    print(f"\nall {len(scripts)} benchmarks ran; results in {HERE / 'results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
