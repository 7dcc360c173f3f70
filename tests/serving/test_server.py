"""The serving runtime through a real kserve ModelServer process (python -m chiml_serving).

Covers the ChimlModel contract every runtime inherits: metadata, V2/V1 inference equal to the
model's in-process predictions, and bad requests answered with a 400 that names the problem
while the server keeps serving.
"""

from __future__ import annotations

import ipaddress
import json

import httpx
import numpy as np
import psutil
import pytest

from tests.serving.conftest import Digits, ServerProcess, post_declaring


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
        (_body(datatype="INT64"), "datatype INT64 given, the model takes FP64 (and the cast would lose"),
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
    """--workers 2: uvicorn's supervisor runs two processes on one socket; each loads the model."""
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
        bad = _v2(server, {"inputs": [{"name": "input-0", "datatype": "INT64", "shape": [1, 64], "data": ROW}]})
        assert bad.status_code == 400 and "datatype INT64" in bad.json()["error"]  # same checks in every worker
        meta = httpx.get(f"{server.url}/v2/models/digits2", timeout=10).json()
        assert meta["platform"] == "mlflow"
    finally:
        server.stop()
    assert not psutil.pid_exists(server.process.pid) or psutil.Process(server.process.pid).status() == "zombie"


def test_sklearn_endpoint_does_not_load_torch(digits_server: ServerProcess) -> None:
    """skops' estimator walk would import torch (~300 MB) into every scikit-learn endpoint."""
    maps = psutil.Process(digits_server.process.pid).memory_maps()
    assert not [m.path for m in maps if "libtorch" in m.path]


def test_lossless_datatype_is_cast(digits_server: ServerProcess, digits: Digits) -> None:
    """FP32 (or a small integer type) fits FP64 exactly: accepted, as the model's datatype."""
    x = np.round(digits.X[:4])
    for datatype, values in (("FP32", x), ("INT16", x.astype(np.int16))):
        response = _v2(digits_server, {"inputs": [_tensor(values, datatype=datatype)]})
        assert response.status_code == 200, response.text
        np.testing.assert_array_equal(response.json()["outputs"][0]["data"], digits.model.predict(x))


def _binary_request(x: np.ndarray, binary_output: bool) -> tuple[bytes, dict[str, str]]:
    raw = x.astype("<f8").tobytes()
    header = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(x.shape),
                          "parameters": {"binary_data_size": len(raw)}}],
              "parameters": {"binary_data_output": binary_output}}
    head = json.dumps(header).encode()
    return head + raw, {"inference-header-content-length": str(len(head)), "content-type": "application/octet-stream"}


@pytest.mark.parametrize("binary_output", [False, True])
def test_binary_tensor_data_extension(digits_server: ServerProcess, digits: Digits, binary_output: bool) -> None:
    x = digits.X[:64]
    body, headers = _binary_request(x, binary_output)
    response = httpx.post(f"{digits_server.url}/v2/models/digits/infer", content=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    expected = digits.model.predict(x)
    if not binary_output:
        np.testing.assert_array_equal(response.json()["outputs"][0]["data"], expected)
        return
    split = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:split])
    (output,) = header["outputs"]
    assert output["datatype"] == "INT64" and output["shape"] == [64] and "data" not in output
    assert output["parameters"]["binary_data_size"] == 64 * 8
    np.testing.assert_array_equal(np.frombuffer(response.content[split:], dtype="<i8"), expected)


def test_binary_sizes_that_lie_get_400(digits_server: ServerProcess, digits: Digits) -> None:
    body, headers = _binary_request(digits.X[:2], False)
    url = f"{digits_server.url}/v2/models/digits/infer"
    short = httpx.post(url, content=body[:-8], headers=headers, timeout=10)
    assert short.status_code == 400 and "binary_data_size" in short.json()["error"]
    huge = httpx.post(url, content=body, headers={**headers, "inference-header-content-length": "999999"},
                      timeout=10)
    assert huge.status_code == 400 and "outside the body" in huge.json()["error"]


def test_requested_outputs(digits_server: ServerProcess, digits: Digits) -> None:
    body = {"id": "q", "inputs": [_tensor(digits.X[:2])], "outputs": [{"name": "output-0"}]}
    response = _v2(digits_server, body)
    assert response.status_code == 200 and [o["name"] for o in response.json()["outputs"]] == ["output-0"]
    unknown = _v2(digits_server, {"inputs": [_tensor(digits.X[:2])], "outputs": [{"name": "proba"}]})
    assert unknown.status_code == 400 and "unknown output tensor(s) 'proba'" in unknown.json()["error"]


def test_body_above_the_limit_gets_413_without_being_read(digits_server: ServerProcess) -> None:
    rss_before = psutil.Process(digits_server.process.pid).memory_info().rss
    # the server answers from Content-Length alone; the client sends only the headers
    status, body = post_declaring(digits_server.port, "/v2/models/digits/infer", 100 * 2**20)
    assert status == 413 and "exceeds the limit" in body["error"]
    assert psutil.Process(digits_server.process.pid).memory_info().rss - rss_before < 20 * 2**20
    assert httpx.get(f"{digits_server.url}/v2/health/ready", timeout=10).status_code == 200


def test_metrics_count_requests_and_time_each_stage(digits_server: ServerProcess, digits: Digits) -> None:
    _v2(digits_server, {"inputs": [_tensor(digits.X[:1])]})
    _v2(digits_server, {"inputs": []})
    text = httpx.get(f"{digits_server.url}/metrics", timeout=10).text
    assert 'chiml_serving_requests_total{code="200",model="digits",protocol="v2"}' in text
    assert 'chiml_serving_requests_total{code="400",model="digits",protocol="v2"}' in text
    for stage in ("decode", "predict", "encode", "total"):
        assert f'chiml_serving_request_seconds_count{{model="digits",protocol="v2",stage="{stage}"}}' in text


def test_concurrent_requests_each_get_their_own_rows(digits_server: ServerProcess, digits: Digits) -> None:
    """Requests that arrive together share a model call (batching); each must get its own answer."""
    import asyncio

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            sends = [client.post(f"{digits_server.url}/v2/models/digits/infer",
                                 json={"id": str(i), "inputs": [_tensor(digits.X[i:i + 1 + i % 3])]})
                     for i in range(48)]
            return await asyncio.gather(*sends)

    for i, response in enumerate(asyncio.run(burst())):
        assert response.status_code == 200, response.text
        assert response.json()["id"] == str(i)
        np.testing.assert_array_equal(response.json()["outputs"][0]["data"],
                                      digits.model.predict(digits.X[i:i + 1 + i % 3]))


def test_openapi_document_lists_the_routes(digits_server: ServerProcess) -> None:
    document = httpx.get(f"{digits_server.url}/openapi.json", timeout=10).json()
    assert {"/v2/models/{model_name}/infer", "/v1/models/{model_name}:predict", "/v2/health/ready",
            "/metrics"} <= set(document["paths"])


def test_grpc_answers_like_rest(digits: Digits) -> None:
    """--grpc-port: KServe's V2 gRPC service (kserve's servicer) on loopback beside REST."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    from tests.conftest import free_port

    grpc_port = free_port()
    server = ServerProcess(digits.model_dir, "digitsg", extra=["--grpc-port", str(grpc_port)])
    try:
        server.wait_ready()
        listening = [(ipaddress.ip_address(c.laddr.ip), c.laddr.port)
                     for c in psutil.Process(server.process.pid).connections("inet") if c.status == psutil.CONN_LISTEN]
        assert {port for _, port in listening} == {server.port, grpc_port}
        # gRPC's socket may be IPv6 with the v4-mapped loopback (::ffff:127.0.0.1): loopback all the same
        assert all((getattr(ip, "ipv4_mapped", None) or ip).is_loopback for ip, _ in listening), listening
        x = digits.X[:5]
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = GRPCInferenceServiceStub(channel)
            request = pb.ModelInferRequest(model_name="digitsg", inputs=[pb.ModelInferRequest.InferInputTensor(
                name="input-0", datatype="FP64", shape=list(x.shape),
                contents=pb.InferTensorContents(fp64_contents=x.ravel().tolist()))])
            reply = stub.ModelInfer(request, timeout=30)
            assert reply.outputs[0].name == "output-0" and reply.outputs[0].datatype == "INT64"
            values = np.frombuffer(reply.raw_output_contents[0], dtype="<i8") if reply.raw_output_contents \
                else np.asarray(reply.outputs[0].contents.int64_contents)
            np.testing.assert_array_equal(values, digits.model.predict(x))
            with pytest.raises(grpc.RpcError) as bad:
                stub.ModelInfer(pb.ModelInferRequest(model_name="digitsg", inputs=[
                    pb.ModelInferRequest.InferInputTensor(name="pixels", datatype="FP64", shape=[1, 1],
                                                          contents=pb.InferTensorContents(fp64_contents=[0.0]))]),
                                timeout=30)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "unknown input tensor 'pixels'" in bad.value.details()
    finally:
        server.stop()
