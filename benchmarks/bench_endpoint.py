"""Endpoint latency: p50/p99 of V2 (and V1) requests to a served scikit-learn digits model.

Starts the same process `chiml deploy` supervises (``python -m chiml_serving --runtime mlflow``,
one worker, loopback) on a temp copy of a digits LogisticRegression saved as an MLflow model,
then times sequential requests over one keep-alive connection for batch 1 and batch 64, with
the in-process ``model.predict`` time as the floor. Also records time-to-ready and the
endpoint's RSS. Writes benchmarks/results/endpoint.json.
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

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import free_port

WARMUP = 30
REQUESTS = 500
BATCHES = (1, 64)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


def save_model(directory: Path) -> tuple[object, np.ndarray]:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(X, y)
    signature = infer_signature(X, model.predict(X))
    mlflow.sklearn.save_model(model, str(directory), signature=signature, pip_requirements=[])
    return model, X


def time_requests(send, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        send()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="chiml-bench-endpoint-") as tmp:
        model_dir = Path(tmp) / "digits"
        model, X = save_model(model_dir)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "KSERVE_LOGLEVEL": "WARNING"}  # as chiml deploy runs it
        log = (Path(tmp) / "endpoint.log").open("w")
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "chiml_serving", "--runtime", "mlflow", "--model-name", "digits",
             "--model-dir", str(model_dir), "--http-port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            with httpx.Client(timeout=30) as client:
                while True:
                    if proc.poll() is not None:
                        raise SystemExit(f"endpoint exited: {(Path(tmp) / 'endpoint.log').read_text()[-2000:]}")
                    try:
                        if client.get(f"{url}/v2/models/digits/ready").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
                ready_s = time.perf_counter() - started
                rss_mb = psutil.Process(proc.pid).memory_info().rss / 2**20
                rows = []
                for batch in BATCHES:
                    x = X[:batch]
                    v2 = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(x.shape),
                                      "data": x.ravel().tolist()}]}  # fmt: skip
                    v1 = {"instances": x.tolist()}
                    expected = model.predict(x).tolist()

                    def send_v2(body=v2, expected=expected) -> None:
                        response = client.post(f"{url}/v2/models/digits/infer", json=body)
                        assert response.json()["outputs"][0]["data"] == expected

                    def send_v1(body=v1, expected=expected) -> None:
                        response = client.post(f"{url}/v1/models/digits:predict", json=body)
                        assert response.json()["predictions"] == expected

                    for name, send in (("v2", send_v2), ("v1", send_v1)):
                        time_requests(send, WARMUP)
                        rows.append({"protocol": name, "batch": batch, **percentiles(time_requests(send, REQUESTS))})
                    local = time_requests(lambda x=x: model.predict(x), REQUESTS)
                    rows.append({"protocol": "in-process", "batch": batch, **percentiles(local)})
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()

    print(f"endpoint ready in {ready_s:.1f}s, RSS {rss_mb:.0f} MB; {REQUESTS} sequential requests per row")
    print(f"{'protocol':<11} {'batch':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for row in rows:
        print(
            f"{row['protocol']:<11} {row['batch']:>5} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['mean_ms']:>8.2f}"
        )
    out = Path(__file__).resolve().parent / "results" / "endpoint.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"cpu_count": os.cpu_count(), "requests": REQUESTS, "ready_s": round(ready_s, 2),
                               "rss_mb": round(rss_mb, 1), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
