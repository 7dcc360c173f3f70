"""Fixtures of the serving tests: real MLflow models on disk and real endpoint processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import free_port


@dataclass
class Digits:
    """A scikit-learn digits classifier saved as an MLflow model, plus data to query it with."""

    model_dir: Path
    model: object
    X: np.ndarray


def save_digits_model(directory: Path, shift: int = 0) -> Digits:
    """``shift``: a second version of the model that predicts ``(digit + shift) % 10``."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=200).fit(X[:600], (y[:600] + shift) % 10)
    path = directory / ("digits" if not shift else f"digits-shift{shift}")
    # pip_requirements=[]: skip MLflow's slow requirement inference (it imports torch and more).
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(X, model.predict(X)), pip_requirements=[])
    return Digits(model_dir=path, model=model, X=X)


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    return save_digits_model(tmp_path_factory.mktemp("models"))


class ServerProcess:
    """``python -m chiml_serving`` in a subprocess on a free loopback port."""

    def __init__(self, model_dir: Path, name: str, workers: int = 1, runtime: str = "mlflow",
                 extra: list[str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = model_dir.parent / f"{name}-{self.port}.log"
        command = [
            sys.executable, "-m", "chiml_serving", "--runtime", runtime, "--model-name", name,
            "--model-dir", str(model_dir), "--http-port", str(self.port), "--workers", str(workers),
            *(extra or []),
        ]  # fmt: skip
        with self.log.open("w") as handle:
            self.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/v2/models/{self.name}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        import os
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: workers included
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def digits_server(digits: Digits) -> Iterator[ServerProcess]:
    server = ServerProcess(digits.model_dir, "digits")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def compile_artifact(model_dir: Path, runtime: str, dest: Path, sample: np.ndarray, flavor: str = "sklearn") -> Path:
    """What `chiml optimize --target RUNTIME` builds from an MLflow model (scikit-learn or pytorch
    flavor): the ONNX export and its artifact directory (model.onnx + chiml-runtime.json with the
    served interface)."""
    from chiml.optimize import candidates as cands
    from chiml.optimize.export import export
    from chiml.optimize.source import InputSpec

    inputs = [InputSpec("input", "float32", [-1, sample.shape[1]])]
    exported = export(flavor, model_dir, inputs, {"input": sample.astype(np.float32)}, dest / "onnx")
    candidate = cands.Candidate(runtime, runtime)
    return cands.build_artifact(candidate, exported, dest / "artifacts", {"model_uri": str(model_dir)},
                                cands.served_interface(model_dir))


def post_declaring(port: int, path: str, length: int, sent: bytes = b'{"inputs": [') -> tuple[int, dict]:
    """POST that declares a ``length``-byte body but sends only ``sent``: (status, JSON body).

    A raw socket, because an HTTP client refuses to send less than it declares; the server is
    expected to answer from the headers alone.
    """
    import json
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode() + sent)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body[: _length(data)])


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30
