"""What an optimize Job's pod runs: fetch one compiled candidate, time it, send the results back.

It runs in the serving image of the candidate's runtime (which holds ``chiml_serving`` and the
runtime, but not chiml), mounted from the Job's ConfigMap, so it uses the standard library
only. MLflow's artifact proxy is the exchange point, as for every chiml run: the laptop logged
the candidate's artifact directory and the gate's held-out inputs to the optimization's run;
this downloads them over HTTP from the in-cluster MLflow, runs ``chiml_serving.runtimes.worker``
(the same benchmark worker a local `chiml optimize` runs), and uploads its result, the gate
outputs and any engine the runtime built (a TensorRT plan) to the same run.

Environment: CHIML_ARTIFACTS_URL (the run's artifact root on MLflow's artifact proxy),
CHIML_BENCH (JSON: candidate, files, the worker request's settings), CHIML_WORKDIR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

RESULTS = "bench"  # <run>/bench/<candidate>/{result.json,outputs.npz}


def _url(path: str) -> str:
    return f"{os.environ['CHIML_ARTIFACTS_URL'].rstrip('/')}/{urllib.parse.quote(path)}"


def fetch(path: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(_url(path), timeout=300) as response, dest.open("wb") as sink:
        while chunk := response.read(1 << 20):
            sink.write(chunk)


def put(path: str, source: Path) -> None:
    request = urllib.request.Request(_url(path), data=source.read_bytes(), method="PUT")
    with urllib.request.urlopen(request, timeout=300):
        pass


def main() -> int:
    spec = json.loads(os.environ["CHIML_BENCH"])
    work = Path(os.environ.get("CHIML_WORKDIR", "/workspace"))
    candidate = spec["candidate"]
    model = work / "model"
    print(f"fetching {candidate} ({len(spec['files'])} files) and the held-out inputs", flush=True)
    for relative in spec["files"]:
        fetch(f"runtimes/{candidate}/{relative}", model / relative)
    fetch(spec["inputs"], work / "inputs.npz")
    request = {**spec["request"], "model_dir": str(model), "inputs": str(work / "inputs.npz"),
               "gate_outputs": str(work / "outputs.npz"), "result": str(work / "result.json")}
    request_path = work / "request.json"
    request_path.write_text(json.dumps(request), encoding="utf-8")
    print(f"compiling, gating and timing {candidate}", flush=True)
    code = subprocess.run([sys.executable, "-m", "chiml_serving.runtimes.worker", str(request_path)],
                          check=False).returncode
    if not (work / "result.json").is_file():
        print(f"the benchmark worker exited with {code} and wrote no result", file=sys.stderr, flush=True)
        return code or 1
    put(f"{RESULTS}/{candidate}/result.json", work / "result.json")
    if (work / "outputs.npz").is_file():
        put(f"{RESULTS}/{candidate}/outputs.npz", work / "outputs.npz")
    for engine in sorted((model / "engines").glob("*")) if (model / "engines").is_dir() else []:
        put(f"runtimes/{candidate}/engines/{engine.name}", engine)  # built here, for this GPU: Triton serves it
    print(f"{candidate}: results stored with the run", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
