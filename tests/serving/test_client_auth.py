"""Endpoints behind the cluster ingress need basic auth: the client must send the backend's token."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from chiml.errors import ChimlError
from chiml.serving import client

TOKEN = "s3cret-token"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _authorized(self) -> bool:
        expected = "Basic " + base64.b64encode(f"chiml:{TOKEN}".encode()).decode()
        if self.headers.get("Authorization") == expected:
            return True
        self.send_response(401)
        self.end_headers()
        self.wfile.write(b"unauthorized")
        return False

    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self._authorized():
            self._json(
                {
                    "name": "m",
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
                    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
                }
            )

    def do_POST(self) -> None:
        if not self._authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = [2 * v for v in body["inputs"][0]["data"]]
        self._json({"model_name": "m", "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2], "data": data}]})


class _Backend:
    def __init__(self, url: str, auth: tuple[str, str] | None) -> None:
        self._url, self._auth = url, auth

    def url(self, name: str) -> str:
        return self._url

    def urls(self, name: str) -> list[str]:
        return [self._url]

    def auth(self) -> tuple[str, str] | None:
        return self._auth


class _Platform:
    def __init__(self, backend: _Backend) -> None:
        self.endpoints = backend

        class _Serving:
            request_timeout_s = 10.0

        class _Config:
            serving = _Serving()

        self.config = _Config()


@pytest.fixture
def server_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_predict_sends_the_backends_token(server_url):
    client._metadata_cache.clear()
    out = client.predict(_Platform(_Backend(server_url, ("chiml", TOKEN))), "m", np.array([[1.0, 2.5]], np.float32))
    np.testing.assert_allclose(out, [[2.0, 5.0]])


def test_without_the_token_the_error_says_rejected(server_url):
    client._metadata_cache.clear()
    with pytest.raises(ChimlError, match="HTTP 401"):
        client.predict(_Platform(_Backend(server_url, None)), "m", np.array([[1.0, 2.5]], np.float32))
