"""Bad input on the endpoint API: every malformed request gets a 4xx with a message, never a 5xx,
never a dead or stuck server, and memory stays bounded.

One real endpoint process (``python -m chiml_serving``, the digits model, a 8 MiB body limit so
that the limit itself is exercised quickly) takes:

* schemathesis over the endpoint's own OpenAPI description (``GET /openapi.json``), positive
  and negative cases of every operation;
* hypothesis: V2 and V1 bodies built from a valid one by mutating each field, and arbitrary
  JSON documents;
* the named attacks: a 100 MB body (declared, and actually streamed), a shape that claims a
  billion elements (JSON and binary), JSON nested far deeper than any parser's stack.

The last test checks the server is alive, answers a valid request, and that its RSS never
grew past a bound; it prints the figures (requests sent, RSS) for the reliability note.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.serving.conftest import Digits, ServerProcess, post_declaring

MAX_BODY_MB = 8
RSS_BOUND_MB = 150  # growth over the idle server's RSS that would mean a leak or an unbounded buffer
FIGURES: dict[str, Any] = {"requests": 0, "by_status": {}, "max_rss_mb": 0.0}
ROW = [0.5] * 64


@pytest.fixture(scope="module")
def server(digits: Digits) -> Iterator[ServerProcess]:
    process = ServerProcess(digits.model_dir, "digits", extra=["--max-body-mb", str(MAX_BODY_MB)])
    try:
        process.wait_ready()
        FIGURES["idle_rss_mb"] = _rss(process)
        yield process
    finally:
        process.stop()


def _rss(server: ServerProcess) -> float:
    return psutil.Process(server.process.pid).memory_info().rss / 2**20


def _record(server: ServerProcess, response: httpx.Response) -> None:
    FIGURES["requests"] += 1
    FIGURES["by_status"][response.status_code] = FIGURES["by_status"].get(response.status_code, 0) + 1
    if FIGURES["requests"] % 25 == 0:
        FIGURES["max_rss_mb"] = max(FIGURES["max_rss_mb"], _rss(server))


def _assert_client_error_or_ok(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers.get("content-type") == "application/json", response.text[:300]
        body = response.json()
        assert isinstance(body.get("error"), str) and body["error"], response.text[:300]


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as session:
        yield session


# ---------------------------------------------------------------------------------------- schemathesis
# Each operation of the endpoint's OpenAPI description, positive and negative cases, driven by
# hypothesis directly (schemathesis' pytest plugin does not load under this pytest).
@pytest.fixture(scope="module")
def operations(server: ServerProcess) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 12  # every route of chiml_serving.app
    return found


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_openapi_operations_never_answer_5xx(operations: list[Any], mode: GenerationMode,
                                            server: ServerProcess) -> None:
    negated = 0
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            response = case.call(base_url=server.url, timeout=30)
            FIGURES["requests"] += 1
            FIGURES["by_status"][response.status_code] = FIGURES["by_status"].get(response.status_code, 0) + 1
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
            if response.status_code >= 400:
                assert isinstance(response.json().get("error"), str), f"{where}: {response.text[:300]}"

        try:
            check()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise
            continue  # nothing to negate: no body, and any string is a valid model name
        negated += 1
    # the two inference operations (V2 infer, V1 predict) take bodies: they must have been negated
    assert mode is GenerationMode.POSITIVE or negated >= 2


# ---------------------------------------------------------------------------------------- hypothesis
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=40,
)
names = st.sampled_from(["input-0", "input", "", "input-0 ", "INPUT-0"]) | st.text(max_size=12)
datatypes = st.sampled_from(["FP64", "FP32", "FP16", "INT64", "INT8", "UINT64", "BOOL", "BYTES", "fp64", "NOPE", ""])
shapes = st.lists(st.integers(min_value=-3, max_value=2**40), max_size=4) | st.sampled_from([[1, 64], [2, 64], [64]])
data = (st.just(ROW) | st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=130)
        | st.lists(st.lists(st.integers(-5, 5), max_size=64), max_size=3) | json_values)


@st.composite
def v2_bodies(draw: st.DrawFn) -> Any:
    tensor: dict[str, Any] = {"name": "input-0", "datatype": "FP64", "shape": [1, 64], "data": ROW}
    for key, strategy in (("name", names), ("datatype", datatypes), ("shape", shapes), ("data", data)):
        choice = draw(st.sampled_from(["keep", "change", "drop"]))
        if choice == "change":
            tensor[key] = draw(strategy)
        elif choice == "drop":
            tensor.pop(key)
    body: dict[str, Any] = {"inputs": draw(st.sampled_from([[tensor], [tensor, tensor], tensor, []]))}
    if draw(st.booleans()):
        body["outputs"] = draw(st.lists(st.fixed_dictionaries({"name": names}), max_size=2) | json_values)
    if draw(st.booleans()):
        body["parameters"] = draw(st.fixed_dictionaries({"binary_data_output": json_values}) | json_values)
    return body


@given(body=v2_bodies() | json_values)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_v2_body_gets_an_answer_not_a_crash(body: Any, server: ServerProcess, client: httpx.Client) -> None:
    response = client.post("/v2/models/digits/infer", content=json.dumps(body).encode(),
                           headers={"content-type": "application/json"})
    _record(server, response)
    _assert_client_error_or_ok(response)


rows = st.lists(st.lists(st.floats(allow_nan=False), max_size=65), max_size=3)


@given(body=st.fixed_dictionaries({"instances": json_values | rows}) | json_values)
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_v1_body_gets_an_answer_not_a_crash(body: Any, server: ServerProcess, client: httpx.Client) -> None:
    response = client.post("/v1/models/digits:predict", content=json.dumps(body).encode())
    _record(server, response)
    _assert_client_error_or_ok(response)


@given(raw=st.binary(max_size=300),
       header=st.none() | st.integers(-5, 400).map(str) | st.text(st.characters(min_codepoint=33, max_codepoint=126),
                                                                     max_size=5))
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_bytes_with_any_binary_header(raw: bytes, header: str | None, server: ServerProcess,
                                          client: httpx.Client) -> None:
    headers = {"content-type": "application/octet-stream"}
    if header is not None:
        headers["inference-header-content-length"] = header
    try:
        response = client.post("/v2/models/digits/infer", content=raw, headers=headers)
    except httpx.LocalProtocolError:
        return  # httpx refuses to send a header that is not valid HTTP: nothing reached the server
    _record(server, response)
    _assert_client_error_or_ok(response)


# ---------------------------------------------------------------------------------------- named attacks
def test_a_100_mb_body_is_refused_from_its_declared_length(server: ServerProcess, client: httpx.Client) -> None:
    for path in ("/v2/models/digits/infer", "/v1/models/digits:predict"):
        status, body = post_declaring(server.port, path, 100 * 10**6)
        FIGURES["requests"] += 1
        assert status == 413 and "exceeds the limit" in body["error"]


def test_a_streamed_100_mb_body_is_cut_off_at_the_limit(server: ServerProcess) -> None:
    chunk = b"[" + b"0.5," * 262_000 + b"0.5]"  # about 1 MB of JSON numbers

    def body() -> Iterator[bytes]:
        yield b'{"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 64], "data": '
        for _ in range(100):
            yield chunk
        yield b"}]}"

    with httpx.Client(timeout=60) as session:  # chunked: no Content-Length to refuse it by
        try:
            response = session.post(f"{server.url}/v2/models/digits/infer", content=body(),
                                    headers={"content-type": "application/json"})
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            response = None  # the server answered 413 and closed while the client was still sending
    FIGURES["requests"] += 1
    if response is not None:
        assert response.status_code == 413
    FIGURES["max_rss_mb"] = max(FIGURES["max_rss_mb"], _rss(server))
    assert _rss(server) - FIGURES["idle_rss_mb"] < RSS_BOUND_MB


@pytest.mark.parametrize("shape", [[10**9, 64], [1, 10**9], [10**5, 10**5, 10**5]])
def test_a_shape_claiming_a_billion_elements(shape: list[int], server: ServerProcess, client: httpx.Client) -> None:
    json_body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": shape, "data": ROW}]}
    response = client.post("/v2/models/digits/infer", json=json_body)
    _record(server, response)
    assert response.status_code == 400 and "shape" in response.json()["error"]
    header = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": shape,
                                     "parameters": {"binary_data_size": 512}}]}).encode()
    response = client.post("/v2/models/digits/infer", content=header + np.zeros(64).tobytes(),
                           headers={"inference-header-content-length": str(len(header))})
    _record(server, response)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("depth", [200, 5_000, 1_000_000])
def test_deep_json(depth: int, server: ServerProcess, client: httpx.Client) -> None:
    nested = "[" * depth + "0.5" + "]" * depth
    for body in (f'{{"inputs": [{{"name": "input-0", "datatype": "FP64", "shape": [1, 64], "data": {nested}}}]}}',
                 f'{{"instances": {nested}}}'):
        for path in ("/v2/models/digits/infer", "/v1/models/digits:predict"):
            response = client.post(path, content=body.encode(), headers={"content-type": "application/json"})
            _record(server, response)
            assert response.status_code in (400, 413), response.text[:200]


def test_the_server_is_alive_answers_and_stayed_bounded(server: ServerProcess, client: httpx.Client,
                                                        digits: Digits, capsys: pytest.CaptureFixture[str]) -> None:
    assert server.process.poll() is None
    x = digits.X[:3]
    response = client.post("/v2/models/digits/infer", json={"inputs": [
        {"name": "input-0", "datatype": "FP64", "shape": [3, 64], "data": x.ravel().tolist()}]})
    assert response.status_code == 200
    np.testing.assert_array_equal(response.json()["outputs"][0]["data"], digits.model.predict(x))
    FIGURES["max_rss_mb"] = max(FIGURES["max_rss_mb"], _rss(server))
    growth = FIGURES["max_rss_mb"] - FIGURES["idle_rss_mb"]
    assert FIGURES["requests"] > 300
    assert growth < RSS_BOUND_MB, FIGURES
    with capsys.disabled():
        statuses = ", ".join(f"{code}: {count}" for code, count in sorted(FIGURES["by_status"].items()))
        print(f"\nbad-input figures: {FIGURES['requests']} requests ({statuses}); RSS idle "
              f"{FIGURES['idle_rss_mb']:.0f} MB, max {FIGURES['max_rss_mb']:.0f} MB (+{growth:.0f} MB); "
              f"body limit {MAX_BODY_MB} MiB")
