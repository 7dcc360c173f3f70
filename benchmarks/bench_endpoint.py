"""The serving benchmark: every chiml runtime side by side with its peers, in one run.

One model (a scikit-learn MLP on the digits, as in the issue that set the goals), one server
process each, on loopback:

* chiml: ``python -m chiml_serving --runtime mlflow`` (the default runtime; also with request
  merging off, ``--max-batch-size 0``), and every compiled runtime on the ``chiml optimize``
  artifact of the same model (onnxruntime, openvino, deepsparse where its environment exists);
* MLServer 1.7 with its scikit-learn runtime, in its own throwaway venv (pins in
  peers/mlserver-requirements.txt), in two configurations: parallel workers off, and parallel
  workers off with adaptive batching; the better one is "MLServer (best)";
* plain kserve ModelServer with a scikit-learn model (what kserve's sklearnserver does);
* ``mlflow models serve`` (its own /invocations protocol: the peer a user would try first).

Load: wrk (Debian's package) with peers/post.lua, one wrk thread, keep-alive connections, for
batch 1 and batch 64 at concurrency 1 and 16. All servers are started first (an idle server
costs nothing) and checked to answer the model's own predictions; then every measurement
(batch x concurrency) runs on each server in turn, for several rounds in alternating order, and
the median is kept: on a shared machine, load from a neighbour then falls on every server
instead of on whichever one happened to be running. "MLServer (best)" is the better of its
configurations for each figure (the highest requests/s, the lowest p50). Results: benchmarks/results/endpoint.json and a
table with chiml's ratio to each peer (requests/s: higher is better; p50/p99: lower is better).

    python benchmarks/bench_endpoint.py [--duration 5] [--rounds 3] [--only chiml-mlflow,mlserver]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import free_port  # noqa: E402

PEERS = Path(__file__).resolve().parent / "peers"
RESULTS = Path(__file__).resolve().parent / "results" / "endpoint.json"
NAME = "digits"
BATCHES = (1, 64)
CONCURRENCY = (1, 16)
GOAL_RPS = 2.0  # chiml's requests/s at c=16, batch 1, over MLServer's best
GOAL_P50 = 0.5  # chiml's p50 at c=1, batch 1, over MLServer's


@dataclass
class Server:
    """One server under test: how to start it, what to send, what it must answer."""

    name: str
    group: str  # chiml | peer
    command: list[str]
    url: str  # inference URL
    ready_url: str
    bodies: dict[int, Path]  # batch -> request body file
    check: Callable[[dict[str, Any], np.ndarray], bool]
    env: dict[str, str] = field(default_factory=dict)
    unavailable: str | None = None
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rss_mb: float | None = None


def _model(workdir: Path) -> tuple[Any, np.ndarray]:
    """The digits MLP, saved as an MLflow model (pickle format: skops refuses the MLP's optimizer)."""
    import joblib
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=0).fit(X, y)
    mlflow.sklearn.save_model(model, str(workdir / "mlflow-model"), signature=infer_signature(X, model.predict(X)),
                              pip_requirements=[], serialization_format="pickle")
    joblib.dump(model, workdir / "model.joblib")
    return model, X


def _v2_body(x: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(x.shape), "data": x.ravel().tolist()}]}


def _v2_check(body: dict[str, Any], expected: np.ndarray) -> bool:
    return np.array_equal(np.asarray(body["outputs"][0]["data"]).ravel(), expected)


def _mlflow_check(body: dict[str, Any], expected: np.ndarray) -> bool:
    return np.array_equal(np.asarray(body["predictions"]).ravel(), expected)


def _mlserver_venv(cache: Path, fresh: bool) -> Path:
    """MLServer's own venv (cached by its pins' hash; ``--fresh`` rebuilds it)."""
    pins = (PEERS / "mlserver-requirements.txt").read_text(encoding="utf-8")
    directory = cache / f"mlserver-{hashlib.sha256(pins.encode()).hexdigest()[:12]}"
    ready = directory / ".ready"
    if fresh:
        shutil.rmtree(directory, ignore_errors=True)
    if not ready.is_file():
        shutil.rmtree(directory, ignore_errors=True)
        print(f"creating MLServer's venv in {directory} (pins: {PEERS / 'mlserver-requirements.txt'})", flush=True)
        venv.create(directory, with_pip=True)
        subprocess.run([str(directory / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "-r", str(PEERS / "mlserver-requirements.txt")], check=True)
        ready.write_text(pins, encoding="utf-8")
    return directory


def _mlserver_dir(workdir: Path, name: str, port: int, batching: bool) -> Path:
    directory = workdir / name
    (directory / NAME).mkdir(parents=True)
    # its fastest settings: inference in the server process, no debug logging, no metrics middleware
    settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
                "parallel_workers": 0, "debug": False, "metrics_endpoint": None}
    (directory / "settings.json").write_text(json.dumps(settings))
    model_settings: dict[str, Any] = {"name": NAME, "implementation": "mlserver_sklearn.SKLearnModel",
                                      "parameters": {"uri": str(workdir / "model.joblib")}}
    if batching:
        model_settings.update({"max_batch_size": 16, "max_batch_time": 0.0005})
    (directory / NAME / "model-settings.json").write_text(json.dumps(model_settings))
    return directory


def _compiled(model_dir: Path, runtime: str, workdir: Path, X: np.ndarray) -> tuple[Path | None, str | None]:
    from tests.serving.conftest import compile_artifact

    try:
        return compile_artifact(model_dir, runtime, workdir / f"compiled-{runtime}", X[:200]), None
    except Exception as err:
        return None, f"cannot build the artifact: {' '.join(str(err).split())[:160]}"


def _loads(runtime: str, directory: Path, python: str) -> str | None:
    """Why the runtime cannot load this artifact, or None."""
    probe = (f"from chiml_serving.registry import runtime_class; "
             f"runtime_class({runtime!r})('m', {str(directory)!r}).load()")
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=300, check=False)
    if result.returncode == 0:
        return None
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return "cannot load this model: " + " ".join(" ".join(lines[-3:]).split())[:200]


def _servers(workdir: Path, X: np.ndarray, expected: dict[int, np.ndarray], mlserver: Path | None,
             mlserver_error: str | None) -> list[Server]:
    bodies: dict[int, Path] = {}
    mlflow_bodies: dict[int, Path] = {}
    for batch in BATCHES:
        x = X[:batch]
        bodies[batch] = workdir / f"v2-{batch}.json"
        bodies[batch].write_text(json.dumps(_v2_body(x)))
        mlflow_bodies[batch] = workdir / f"mlflow-{batch}.json"
        mlflow_bodies[batch].write_text(json.dumps({"inputs": x.tolist()}))
    model_dir = workdir / "mlflow-model"
    python = sys.executable
    servers = []

    def chiml(name: str, runtime: str, directory: Path | None, reason: str | None, *extra: str,
              interpreter: str = python) -> None:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        if directory is not None and reason is None:
            reason = _loads(runtime, directory, interpreter)
        servers.append(Server(
            name, "chiml",
            [interpreter, "-m", "chiml_serving", "--runtime", runtime, "--model-name", NAME, "--model-dir",
             str(directory), "--http-port", str(port), *extra],
            f"{base}/v2/models/{NAME}/infer", f"{base}/v2/models/{NAME}/ready", bodies, _v2_check,
            {"KSERVE_LOGLEVEL": "WARNING"}, unavailable=reason))

    chiml("chiml-mlflow", "mlflow", model_dir, None)
    chiml("chiml-mlflow-nomerge", "mlflow", model_dir, None, "--max-batch-size", "0")
    for runtime in ("onnxruntime", "openvino"):
        directory, reason = _compiled(model_dir, runtime, workdir, X)
        chiml(f"chiml-{runtime}", runtime, directory, reason)
    from chiml.config import load_config
    from chiml.optimize import deepsparse_env

    home = Path(os.environ.get("CHIML_HOME") or load_config().home)
    if deepsparse_env.is_ready(home):
        directory, reason = _compiled(model_dir, "deepsparse", workdir, X)
        chiml("chiml-deepsparse", "deepsparse", directory, reason, interpreter=str(deepsparse_env.python_path(home)))
    else:
        chiml("chiml-deepsparse", "deepsparse", None,
              f"its environment is not set up ({deepsparse_env.env_dir(home)}: `make deepsparse-env`)")

    for name, batching in (("mlserver", False), ("mlserver-adaptive-batching", True)):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = ([str(mlserver / "bin" / "mlserver"), "start", str(_mlserver_dir(workdir, name, port, batching))]
                   if mlserver else [])
        servers.append(Server(name, "peer", command, f"{base}/v2/models/{NAME}/infer",
                              f"{base}/v2/models/{NAME}/ready", bodies, _v2_check,
                              {"PATH": f"{mlserver / 'bin'}:{os.environ['PATH']}"} if mlserver else {},
                              unavailable=mlserver_error))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    servers.append(Server("kserve-sklearn", "peer",
                          [python, str(PEERS / "kserve_sklearn.py"), str(workdir / "model.joblib"), NAME, str(port)],
                          f"{base}/v2/models/{NAME}/infer", f"{base}/v2/models/{NAME}/ready", bodies, _v2_check,
                          {"KSERVE_LOGLEVEL": "WARNING"}))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    servers.append(Server("mlflow-serve", "peer",
                          [str(Path(python).parent / "mlflow"), "models", "serve", "-m", str(model_dir),
                           "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "-w", "1"],
                          f"{base}/invocations", f"{base}/ping", mlflow_bodies, _mlflow_check,
                          {"PATH": f"{Path(python).parent}:{os.environ['PATH']}"}))
    for server in servers:
        server.runs = {f"b{b}c{c}": [] for b in BATCHES for c in CONCURRENCY}
    return servers


class Running:
    """A started server process (its own session, so the whole tree stops together)."""

    def __init__(self, server: Server, log: Path) -> None:
        self.server = server
        self.log = log
        with log.open("w") as handle:
            self.process = subprocess.Popen(server.command, stdout=handle, stderr=subprocess.STDOUT,
                                            env={**os.environ, **server.env}, start_new_session=True)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.server.name} exited: {self.log.read_text()[-1500:]}")
            try:
                if httpx.get(self.server.ready_url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.server.name} not ready after {timeout:.0f}s: {self.log.read_text()[-1500:]}")

    def rss_mb(self) -> float:
        try:
            root = psutil.Process(self.process.pid)
            return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
        except psutil.Error:
            return float("nan")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


def _wrk(url: str, body: Path, connections: int, seconds: float) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "10s", "-s", str(PEERS / "post.lua"),
               url]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "BODY": str(body)},
                            timeout=seconds + 60, check=True)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    errors = sum(summary[key] for key in ("connect", "read", "write", "status", "timeout"))
    return {"rps": summary["requests"] / (summary["duration_us"] / 1e6), "p50_ms": summary["p50_us"] / 1e3,
            "p99_ms": summary["p99_us"] / 1e3, "errors": errors, "requests": summary["requests"]}


def _check(server: Server) -> None:
    """The server answers the model's own predictions for every body it will be sent."""
    for batch in BATCHES:
        response = httpx.post(server.url, content=server.bodies[batch].read_bytes(),
                              headers={"content-type": "application/json"}, timeout=30)
        if response.status_code != 200 or not server.check(response.json(), EXPECTED[batch]):
            raise RuntimeError(f"{server.name} answered batch {batch} wrongly: {response.status_code} "
                               f"{response.text[:300]}")


EXPECTED: dict[int, np.ndarray] = {}


def _summary(server: Server) -> dict[str, Any]:
    """Median over the rounds of each figure; errors summed."""
    out: dict[str, Any] = {"name": server.name, "group": server.group, "rss_mb": server.rss_mb}
    if server.unavailable:
        out["unavailable"] = server.unavailable
        return out
    for key, runs in server.runs.items():
        if runs:
            out[key] = {"rps": statistics.median(r["rps"] for r in runs),
                        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                        "errors": sum(r["errors"] for r in runs), "requests": sum(r["requests"] for r in runs)}
    return out


def _best_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best figure of several configurations of one server, figure by figure."""
    best: dict[str, Any] = {"name": "mlserver-best", "group": "peer",
                            "rss_mb": min(row["rss_mb"] for row in rows if row["rss_mb"])}
    for key in (f"b{b}c{c}" for b in BATCHES for c in CONCURRENCY):
        best[key] = {"rps": max(row[key]["rps"] for row in rows),
                     "p50_ms": min(row[key]["p50_ms"] for row in rows),
                     "p99_ms": min(row[key]["p99_ms"] for row in rows),
                     "errors": 0, "requests": 0,
                     "from": {"rps": max(rows, key=lambda row, key=key: row[key]["rps"])["name"],
                              "p50": min(rows, key=lambda row, key=key: row[key]["p50_ms"])["name"]}}
    return best


def _ratios(row: dict[str, Any], peer: dict[str, Any]) -> dict[str, float]:
    ratios = {}
    for key in (f"b{b}c{c}" for b in BATCHES for c in CONCURRENCY):
        if key in row and key in peer:
            ratios[f"{key}_rps"] = row[key]["rps"] / peer[key]["rps"]
            ratios[f"{key}_p50"] = row[key]["p50_ms"] / peer[key]["p50_ms"]
            ratios[f"{key}_p99"] = row[key]["p99_ms"] / peer[key]["p99_ms"]
    if row.get("rss_mb") and peer.get("rss_mb"):
        ratios["rss"] = row["rss_mb"] / peer["rss_mb"]
    return ratios


def _table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'server':<28}{'b1 c1 rps':>10}{'p50':>7}{'p99':>7}{'b1 c16 rps':>11}{'p50':>7}{'p99':>7}"
            f"{'b64 c1 rps':>11}{'b64 c16 rps':>12}{'p99':>7}{'RSS MB':>8}{'err':>5}")
    lines = [head, "-" * len(head)]
    for row in rows:
        if "unavailable" in row:
            lines.append(f"{row['name']:<28}  n/a: {row['unavailable']}")
            continue
        a, b, c, d = row["b1c1"], row["b1c16"], row["b64c1"], row["b64c16"]
        errors = sum(row[k]["errors"] for k in ("b1c1", "b1c16", "b64c1", "b64c16"))
        lines.append(f"{row['name']:<28}{a['rps']:>10.0f}{a['p50_ms']:>7.2f}{a['p99_ms']:>7.2f}{b['rps']:>11.0f}"
                     f"{b['p50_ms']:>7.2f}{b['p99_ms']:>7.2f}{c['rps']:>11.0f}{d['rps']:>12.0f}{d['p99_ms']:>7.1f}"
                     f"{row['rss_mb'] or float('nan'):>8.0f}{errors:>5}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds of load per measurement")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before measuring a server")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all servers (alternating order)")
    parser.add_argument("--only", default="", help="comma-separated server names")
    parser.add_argument("--fresh", action="store_true", help="rebuild MLServer's venv")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chiml-bench"
    with tempfile.TemporaryDirectory(prefix="chiml-bench-endpoint-") as tmp:
        workdir = Path(tmp)
        model, X = _model(workdir)
        for batch in BATCHES:
            EXPECTED[batch] = model.predict(X[:batch])
        mlserver, mlserver_error = None, None
        try:
            mlserver = _mlserver_venv(cache, args.fresh)
        except subprocess.CalledProcessError as err:
            mlserver_error = f"cannot install MLServer: {err}"
        servers = _servers(workdir, X, EXPECTED, mlserver, mlserver_error)
        if args.only:
            wanted = set(args.only.split(","))
            servers = [server for server in servers if server.name in wanted]
        running: dict[str, Running] = {}
        try:
            for server in servers:
                if server.unavailable:
                    continue
                print(f"starting {server.name}", flush=True)
                process = Running(server, workdir / f"{server.name}.log")
                running[server.name] = process
                try:
                    process.wait_ready()
                    _check(server)
                    _wrk(server.url, server.bodies[1], 16, args.warmup)
                except (RuntimeError, subprocess.CalledProcessError, json.JSONDecodeError) as err:
                    server.unavailable = " ".join(str(err).split())[:300]
                    print(f"  {server.name}: {server.unavailable}", flush=True)
                    process.stop()
                    del running[server.name]
            measured = [server for server in servers if server.name in running]
            for round_index in range(args.rounds):
                order = measured if round_index % 2 == 0 else list(reversed(measured))
                print(f"round {round_index + 1}/{args.rounds}", flush=True)
                for batch in BATCHES:
                    for connections in CONCURRENCY:
                        for server in order:
                            server.runs[f"b{batch}c{connections}"].append(
                                _wrk(server.url, server.bodies[batch], connections, args.duration))
                for server in measured:
                    rss = running[server.name].rss_mb()
                    server.rss_mb = rss if server.rss_mb is None else max(server.rss_mb, rss)
        finally:
            for process in running.values():
                process.stop()
    rows = [_summary(server) for server in servers]
    by_name = {row["name"]: row for row in rows}
    mlservers = [row for row in rows if row["name"].startswith("mlserver") and "b1c16" in row]
    best = _best_of(mlservers) if mlservers else None
    comparisons: dict[str, dict[str, dict[str, float]]] = {}
    goals: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["group"] != "chiml" or "b1c16" not in row:
            continue
        peers = {name: by_name[name] for name in ("kserve-sklearn", "mlflow-serve") if "b1c16" in by_name.get(name, {})}
        if best is not None:
            peers["mlserver-best"] = best
        comparisons[row["name"]] = {name: _ratios(row, peer) for name, peer in peers.items()}
        if best is not None:
            rps = row["b1c16"]["rps"] / best["b1c16"]["rps"]
            p50 = row["b1c1"]["p50_ms"] / best["b1c1"]["p50_ms"]
            errors = sum(row[k]["errors"] for k in ("b1c1", "b1c16", "b64c1", "b64c16"))
            goals[row["name"]] = {"c16_rps_ratio": round(rps, 2), "c1_p50_ratio": round(p50, 2), "errors": errors,
                                  "met": rps >= GOAL_RPS and p50 <= GOAL_P50 and errors == 0}
    print()
    print(_table(rows))
    if best is not None:
        print(f"\nMLServer (best): requests/s at c=16 from {best['b1c16']['from']['rps']}, "
              f"p50 at c=1 from {best['b1c1']['from']['p50']}")
        print(f"goals (batch 1): c=16 requests/s >= {GOAL_RPS}x MLServer's best, c=1 p50 <= {GOAL_P50}x, no error")
        for name, goal in goals.items():
            print(f"  {name:<26} c16 rps x{goal['c16_rps_ratio']:<5} c1 p50 x{goal['c1_p50_ratio']:<5} "
                  f"errors {goal['errors']:<3} {'met' if goal['met'] else 'NOT met'}")
    print("\nchiml / peer (rps: higher is better; p50, p99, rss: lower is better)")
    for name, against in comparisons.items():
        for peer, ratio in against.items():
            shown = " ".join(f"{key}={value:.2f}" for key, value in ratio.items()
                             if key.startswith(("b1c1_rps", "b1c16_rps", "b1c1_p50", "b64c16_rps")) or key == "rss")
            print(f"  {name:<26} vs {peer:<16} {shown}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "cpu_count": os.cpu_count(), "duration_s": args.duration, "rounds": args.rounds, "model": "sklearn MLP (64)",
        "load": "wrk -t1, keep-alive, loopback", "servers": rows, "mlserver_best": best,
        "ratios": comparisons, "goals": goals,
    }, indent=2))
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
