"""The serving runtime through a real kserve ModelServer process (python -m chiml_serving).

Covers the ChimlModel contract every runtime inherits: metadata, V2/V1 inference equal to the
model's in-process predictions, and bad requests answered with a 400 that names the problem
while the server keeps serving.
"""

from __future__ import annotations

import httpx
import numpy as np
import psutil
import pytest

from tests.serving.conftest import Digits, ServerProcess


def _v2(server: ServerProcess, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{server.name}/infer", json=body, timeout=30)


def _tensor(x: np.ndarray, name: str = "input-0", datatype: str = "FP64") -> dict:
    return {"name": name, "datatype": datatype, "shape": list(x.shape), "data": x.ravel().tolist()}


def test_metadata_reports_signature_and_runtime(digits_server: ServerProcess) -> None:
    meta = httpx.get(f"{digits_server.url}/v2/models/digits", timeout=10).json()
    assert meta["name"] == "digits"
    assert meta["platform"] == "mlflow"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 64]}]
    assert meta["outputs"] == [{"name": "output-0", "datatype": "INT64", "shape": [-1]}]


def test_v2_predictions_equal_in_process(digits_server: ServerProcess, digits: Digits) -> None:
    x = digits.X[600:700]  # rows the model was not fitted on
    response = _v2(digits_server, {"id": "r1", "inputs": [_tensor(x)]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "r1"
    (output,) = body["outputs"]
    assert output["name"] == "output-0" and output["datatype"] == "INT64" and output["shape"] == [100]
    np.testing.assert_array_equal(np.asarray(output["data"]), digits.model.predict(x))


def test_v2_accepts_nested_data(digits_server: ServerProcess, digits: Digits) -> None:
    x = digits.X[:3]
    body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [3, 64], "data": x.tolist()}]}
    response = _v2(digits_server, body)
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(response.json()["outputs"][0]["data"], digits.model.predict(x))


def test_v1_predictions_equal_in_process(digits_server: ServerProcess, digits: Digits) -> None:
    x = digits.X[700:720]
    response = httpx.post(
        f"{digits_server.url}/v1/models/digits:predict", json={"instances": x.tolist()}, timeout=30
    )
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(response.json()["predictions"], digits.model.predict(x))


ROW = [0.0] * 64
_MISSING = object()


def _body(name: str = "input-0", datatype: str = "FP64", shape: tuple = (1, 64), data: object = ROW) -> dict:
    tensor = {"name": name, "datatype": datatype, "shape": list(shape)}
    if data is not _MISSING:
        tensor["data"] = data
    return {"inputs": [tensor]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_body(name="pixels"), "unknown input tensor 'pixels'"),
        (_body(datatype="FP32"), "datatype FP32 given, the model takes FP64"),
        (_body(shape=(1, 63), data=ROW[:63]), "shape [1, 63] does not match the model's [-1, 64]"),
        (_body(shape=(64,)), "shape [64] does not match"),
        (_body(shape=(2, 64)), "64 values do not fill shape [2, 64]"),
        (_body(data=["x"] * 64), "data is not FP64"),
        ({"inputs": []}, "missing input tensor(s) 'input-0'"),
        (_body(data=_MISSING), "inputs.0.data: Field required"),
        (_body(datatype="NOPE"), "datatype NOPE given"),
    ],
    ids=["name", "dtype", "shape", "rank", "count", "non-numeric", "missing", "no-data", "unknown-dtype"],
)
def test_bad_v2_requests_get_400_naming_the_problem(
    digits_server: ServerProcess, body: dict, expected: str
) -> None:
    response = _v2(digits_server, body)
    assert response.status_code == 400, response.text
    assert expected in response.json()["error"]


def test_malformed_json_gets_400(digits_server: ServerProcess) -> None:
    response = httpx.post(
        f"{digits_server.url}/v2/models/digits/infer",
        content=b'{"inputs": [{"name": "input-0"',
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    v1 = httpx.post(f"{digits_server.url}/v1/models/digits:predict", content=b'{"instances": [[1, 2]', timeout=10)
    assert v1.status_code == 400
    assert "not valid JSON" in v1.json()["error"]


def test_bad_v1_requests_get_400(digits_server: ServerProcess) -> None:
    url = f"{digits_server.url}/v1/models/digits:predict"
    ragged = httpx.post(url, json={"instances": [[1.0] * 64, [1.0] * 3]}, timeout=10)
    assert ragged.status_code == 400 and "input-0" in ragged.json()["error"]
    shape = httpx.post(url, json={"instances": [[1.0, 2.0]]}, timeout=10)
    assert shape.status_code == 400 and "shape [1, 2] does not match" in shape.json()["error"]
    empty = httpx.post(url, json={"instances": []}, timeout=10)
    assert empty.status_code == 400 and "instances" in empty.json()["error"]


def test_server_survives_bad_requests(digits_server: ServerProcess, digits: Digits) -> None:
    for _ in range(3):
        _v2(digits_server, {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [9, 9], "data": [1]}]})
    assert digits_server.process.poll() is None
    response = _v2(digits_server, {"inputs": [_tensor(digits.X[:2])]})
    assert response.status_code == 200


def test_unknown_model_is_404(digits_server: ServerProcess) -> None:
    assert httpx.get(f"{digits_server.url}/v2/models/other", timeout=10).status_code == 404


def test_binds_loopback_only_and_no_grpc(digits_server: ServerProcess) -> None:
    proc = psutil.Process(digits_server.process.pid)
    connections = proc.connections(kind="inet")  # psutil 5.x/6.x spelling; net_connections is 6+
    listening = [(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
    # Only the REST port, on loopback: kserve's defaults (0.0.0.0 and gRPC on [::]:8081) are off.
    assert listening == [("127.0.0.1", digits_server.port)]


def test_workers_load_the_model_in_each_process(digits: Digits) -> None:
    """--workers 2: kserve pickles the model into spawned processes; each reloads it."""
    server = ServerProcess(digits.model_dir, "digits2", workers=2)
    try:
        server.wait_ready(timeout=180)
        workers = psutil.Process(server.process.pid).children()
        assert len(workers) >= 2
        x = digits.X[:50]
        for _ in range(4):
            response = _v2(server, {"inputs": [_tensor(x)]})
            assert response.status_code == 200, response.text
            np.testing.assert_array_equal(response.json()["outputs"][0]["data"], digits.model.predict(x))
        bad = _v2(server, {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 64], "data": ROW}]})
        assert bad.status_code == 400 and "datatype FP32" in bad.json()["error"]  # chiml's handlers in workers too
        meta = httpx.get(f"{server.url}/v2/models/digits2", timeout=10).json()
        assert meta["platform"] == "mlflow"
    finally:
        server.stop()
    assert not psutil.pid_exists(server.process.pid) or psutil.Process(server.process.pid).status() == "zombie"


def test_sklearn_endpoint_does_not_load_torch(digits_server: ServerProcess) -> None:
    """skops' estimator walk would import torch (~300 MB) into every scikit-learn endpoint."""
    maps = psutil.Process(digits_server.process.pid).memory_maps()
    assert not [m.path for m in maps if "libtorch" in m.path]
