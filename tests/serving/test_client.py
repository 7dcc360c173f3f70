"""The V2 client: request building from numpy and JSON files, response decoding, errors."""

from __future__ import annotations

import numpy as np
import pytest

from chiml.errors import InvalidInputError, NotFoundError, UnreachableError
from chiml.serving.client import build_request, decode_outputs, infer_json, model_metadata, request_from_json
from tests.serving.conftest import Digits, ServerProcess

META = {"name": "digits", "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]}
MULTI = {
    "name": "m",
    "inputs": [{"name": "a", "datatype": "INT64", "shape": [-1]}, {"name": "b", "datatype": "BYTES", "shape": [-1]}],
}


def test_single_array_takes_the_declared_name_and_datatype() -> None:
    body = build_request(np.arange(8, dtype=np.float64).reshape(2, 4), META)
    assert body == {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [2, 4], "data": list(range(8))}]}


def test_unsafe_cast_is_left_to_the_server() -> None:
    # float -> int is not a "same kind" cast: sent as FP64, so the endpoint names the mismatch.
    body = build_request({"a": np.array([1.5]), "b": np.array(["x"])}, MULTI)
    assert [(t["name"], t["datatype"]) for t in body["inputs"]] == [("a", "FP64"), ("b", "BYTES")]


def test_single_array_for_a_multi_input_model_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match=r"takes several inputs \(a, b\)"):
        build_request(np.zeros(3), MULTI)


@pytest.mark.parametrize(
    "document",
    [
        {"inputs": [[1, 2, 3, 4], [5, 6, 7, 8]]},
        {"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]},
        [[1, 2, 3, 4], [5, 6, 7, 8]],
        {"inputs": {"input-0": [[1, 2, 3, 4], [5, 6, 7, 8]]}},
    ],
    ids=["inputs-lists", "instances", "bare-list", "inputs-mapping"],
)
def test_plain_json_formats(document: object) -> None:
    body = request_from_json(document, META)
    assert body["inputs"] == [
        {"name": "input-0", "datatype": "FP32", "shape": [2, 4], "data": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]}
    ]


def test_v2_body_is_sent_as_is() -> None:
    v2 = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}], "id": "7"}
    assert request_from_json(v2, META) == v2


def test_ragged_and_unknown_documents() -> None:
    with pytest.raises(InvalidInputError, match="not a rectangular array"):
        request_from_json({"inputs": [[1, 2], [3]]}, META)
    with pytest.raises(InvalidInputError, match="must be a V2 body"):
        request_from_json({"rows": []}, META)


def test_decode_outputs_restores_dtype_and_shape() -> None:
    outputs = decode_outputs(
        {"outputs": [{"name": "p", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}
    )
    assert outputs["p"].dtype == np.float32 and outputs["p"].shape == (2, 2)


def test_against_a_real_endpoint(digits_server: ServerProcess, digits: Digits) -> None:
    meta = model_metadata(digits_server.url, "digits", refresh=True)
    x = digits.X[100:140]
    response = infer_json(digits_server.url, "digits", build_request(x, meta))
    np.testing.assert_array_equal(decode_outputs(response)["output-0"], digits.model.predict(x))
    with pytest.raises(InvalidInputError, match=r"rejected the request \(HTTP 400\): input 'input-0': shape \[40, 3\]"):
        infer_json(digits_server.url, "digits", build_request(x[:, :3], meta))
    with pytest.raises(NotFoundError, match=r"HTTP 404"):
        model_metadata(digits_server.url, "no-such-model", refresh=True)


def test_unreachable_endpoint_is_one_line() -> None:
    from tests.conftest import free_port

    with pytest.raises(UnreachableError, match="endpoint digits is not answering"):
        model_metadata(f"http://127.0.0.1:{free_port()}", "digits", refresh=True)


def test_a_front_without_a_live_replica_is_unreachable(tmp_path) -> None:
    """HAProxy answers 503 when no replica is up: the endpoint is unreachable, not the request bad."""
    import subprocess
    import time

    import httpx

    from chiml.serving import front
    from tests.conftest import free_port

    port, dead = free_port(), free_port()
    config = tmp_path / "front.cfg"
    config.write_text(front.render_config(port, [front.ReplicaAddress(0, dead)], tmp_path / "front.sock", 5))
    proc = subprocess.Popen([front.find_haproxy(), "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the front did not start"
                time.sleep(0.1)
        with pytest.raises(UnreachableError, match=r"no replica answering \(HTTP 503\)"):
            model_metadata(f"http://127.0.0.1:{port}", "digits", refresh=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _cutting_server(cuts: int) -> tuple[int, list[bytes]]:
    """A loopback HTTP server whose first ``cuts`` answers stop after the headers (a replica killed
    while writing), then answers whole; it records each request line."""
    import socket
    import threading

    seen: list[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    body = b'{"model_name": "digits", "outputs": []}'

    def serve() -> None:
        for count in range(cuts + 1):
            conn, _ = listener.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head, _, rest = request.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length")), b"0"))
                while len(rest) < length:
                    rest += conn.recv(65536)
                seen.append(head.split(b"\r\n")[0])
                headers = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
                conn.sendall(headers + (body[:5] if count < cuts else body))
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], seen


def test_an_answer_cut_off_by_a_dying_replica_is_asked_again_once() -> None:
    port, seen = _cutting_server(cuts=1)
    answer = infer_json(f"http://127.0.0.1:{port}", "digits", {"inputs": []}, timeout=10)
    assert answer == {"model_name": "digits", "outputs": []}
    assert seen == [b"POST /v2/models/digits/infer HTTP/1.1"] * 2


def test_an_answer_cut_off_twice_is_one_unreachable_line() -> None:
    port, seen = _cutting_server(cuts=2)
    with pytest.raises(UnreachableError, match=r"endpoint digits is not answering .*RemoteProtocolError"):
        infer_json(f"http://127.0.0.1:{port}", "digits", {"inputs": []}, timeout=10)
    assert len(seen) == 2  # asked twice, not more
