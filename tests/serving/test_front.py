"""The front of a local endpoint (HAProxy) against real replicas and a real supervisord: one URL
over every replica, rolling updates and rollbacks without a failed request, the autoscaler."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from chiml.config import load_config
from chiml.errors import ChimlError
from chiml.serving import front
from chiml.serving.local import LocalEndpoints, autoscaler_program_name
from tests.conftest import write_local_config
from tests.reliability.load import Background
from tests.serving.conftest import Digits, save_digits_model


def _backend(directory: Path, monkeypatch: pytest.MonkeyPatch, serving: dict | None = None) -> LocalEndpoints:
    import yaml

    from chiml.profiles.local import LocalProfile

    monkeypatch.delenv("CHIML_HOME", raising=False)
    path = write_local_config(directory)
    if serving:
        data = yaml.safe_load(path.read_text())
        data["serving"] = serving
        path.write_text(yaml.safe_dump(data))
    profile = LocalProfile(load_config(path))
    profile.supervisor.write_config()
    profile.supervisor.start()
    return LocalEndpoints(profile)


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalEndpoints]:
    endpoints = _backend(tmp_path, monkeypatch)
    try:
        yield endpoints
    finally:
        endpoints.supervisor.shutdown()


def _body(digits: Digits, rows: slice = slice(0, 4)) -> dict:
    X = digits.X[rows]
    return {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(X.shape), "data": X.ravel().tolist()}]}


def _predict(url: str, name: str, digits: Digits) -> list[int]:
    response = httpx.post(f"{url}/v2/models/{name}/infer", json=_body(digits, slice(0, 50)), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]["data"]


def test_front_configuration_is_one_haproxy_accepts(tmp_path: Path) -> None:
    replicas = [front.ReplicaAddress(3, 9101), front.ReplicaAddress(1, 9102)]
    path = tmp_path / "front.cfg"
    path.write_text(front.render_config(9100, replicas, tmp_path / "front.sock", 60))
    front.check_config(front.find_haproxy(), path)
    text = path.read_text()
    assert "bind 127.0.0.1:9100" in text and text.index("server r1 ") < text.index("server r3 ")
    assert "0.0.0.0" not in text and "retry-on conn-failure empty-response 503" in text
    path.write_text(text.replace("balance leastconn", "balance no-such-algorithm"))
    with pytest.raises(ChimlError, match="HAProxy refused the front configuration"):
        front.check_config(front.find_haproxy(), path)


def test_one_url_spreads_requests_over_every_replica(backend: LocalEndpoints, digits: Digits) -> None:
    endpoint = backend.deploy(str(digits.model_dir), "spread", replicas=2)
    assert endpoint.url not in endpoint.urls and len(set(endpoint.ports)) == 2
    # "UP 1/2": serving, one health check missed (a busy machine)
    assert endpoint.status == "ready" and all(r["front"].startswith("UP") for r in endpoint.replica_info)
    with httpx.Client(timeout=30) as client:
        for _ in range(40):
            assert client.post(f"{endpoint.url}/v2/models/spread/infer", json=_body(digits)).status_code == 200
    served = {server.id: server.served for server in backend._front_api("spread").stats().servers}
    assert set(served) == {0, 1} and all(count >= 5 for count in served.values()), served
    assert backend.front_log_file("spread").exists()


def test_rolling_update_answers_every_request_and_then_serves_the_new_model(
    backend: LocalEndpoints, digits: Digits, tmp_path: Path
) -> None:
    shifted = save_digits_model(tmp_path, shift=1)
    endpoint = backend.deploy(str(digits.model_dir), "rolling", replicas=2)
    url = endpoint.url
    assert _predict(url, "rolling", digits) == digits.model.predict(digits.X[:50]).tolist()
    updating = {"on": True}
    load = Background(f"{url}/v2/models/rolling/infer", _body(digits), 200, 8, keep_going=lambda: updating["on"],
                      max_requests=200_000)
    try:
        load.wait_for(50)
        updated = backend.update("rolling", str(shifted.model_dir))
    finally:
        updating["on"] = False
    result = load.join()
    assert result.error_count == 0, result.summary()
    assert updated.url == url and updated.replicas == 2 and updated.model_uri == str(shifted.model_dir)
    assert sorted(r["id"] for r in updated.replica_info) == [2, 3]  # both replicas replaced
    assert _predict(url, "rolling", digits) == shifted.model.predict(digits.X[:50]).tolist()
    folders = sorted(p.name for p in (backend.root / "rolling").iterdir() if p.is_dir())
    assert folders == ["rev-2"]  # the old model's files are gone


def test_a_failed_update_rolls_back_and_keeps_serving(backend: LocalEndpoints, digits: Digits, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(digits.model_dir, broken)
    (broken / "model.skops").write_text("not a model")
    before = backend.deploy(str(digits.model_dir), "steady", replicas=1)
    with pytest.raises(ChimlError, match="exited while loading the model"):
        backend.deploy(str(broken), "steady")
    after = backend.get("steady")
    assert after.status == "ready" and after.model_uri == before.model_uri
    assert [r["id"] for r in after.replica_info] == [r["id"] for r in before.replica_info]
    assert not (backend.root / "steady" / "rev-2").exists()
    assert _predict(after.url, "steady", digits) == digits.model.predict(digits.X[:50]).tolist()


def test_autoscaler_follows_the_requests_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   digits: Digits) -> None:
    backend = _backend(tmp_path, monkeypatch, {"autoscale_interval_s": 1.0, "scale_down_delay_s": 3.0})
    try:
        endpoint = backend.deploy(str(digits.model_dir), "elastic", min_replicas=1, max_replicas=2,
                                  scale_target=2)
        assert (endpoint.replicas, endpoint.min_replicas, endpoint.max_replicas) == (1, 1, 2)
        assert endpoint.scale_metric == "concurrency" and endpoint.scale_target == 2
        assert backend.supervisor.program_info(autoscaler_program_name("elastic"))["statename"] in (
            "RUNNING", "STARTING")
        busy = {"on": True}
        load = Background(f"{endpoint.url}/v2/models/elastic/infer", _body(digits), 100, 8,
                          keep_going=lambda: busy["on"], max_requests=100_000)
        try:
            deadline = time.monotonic() + 180
            while backend.get("elastic").replicas < 2:
                assert time.monotonic() < deadline, backend.get("elastic").events
                time.sleep(0.5)
        finally:
            busy["on"] = False
        result = load.join()
        assert result.error_count == 0, result.summary()
        deadline = time.monotonic() + 120
        while len(backend.get("elastic").events) < 2:  # idle for scale_down_delay_s: back to the minimum
            assert time.monotonic() < deadline, backend.get("elastic").events
            time.sleep(0.5)
        events = backend.get("elastic").events
        assert backend.get("elastic").replicas == 1
        assert [(e["from"], e["to"]) for e in events] == [(1, 2), (2, 1)]
        assert "in flight" in events[0]["why"] and "target 2" in events[0]["why"]
        # a fixed count stops autoscaling
        fixed = backend.scale("elastic", 1)
        assert fixed.max_replicas == 1 and backend.supervisor.program_info(autoscaler_program_name("elastic")) is None
    finally:
        backend.supervisor.shutdown()


def test_recommendations_go_up_at_once_and_down_after_the_delay() -> None:
    from chiml.serving.autoscale import Recommender, wanted
    from chiml.serving.backend import Scaling

    scaling = Scaling(1, 4, "concurrency", 8)
    assert [wanted(total, scaling, 8) for total in (0, 8, 8.5, 31, 100)] == [1, 1, 2, 4, 4]
    now = [0.0]
    recommender = Recommender(down_delay_s=10, clock=lambda: now[0])
    assert recommender.recommend(1, 3) == 3  # up at once
    for second, expected in ((2, 3), (6, 3), (9.5, 3)):
        now[0] = second
        assert recommender.recommend(3, 1) == expected  # wanted 3 less than 10 s ago
    now[0] = 10.5
    assert recommender.recommend(3, 2) == 2  # no want reached 3 for 10 s: down to the window's highest
    recommender.reset()
    now[0] = 11
    assert recommender.recommend(2, 1) == 2  # after a change, a whole delay again
    assert np.isclose(scaling.target, 8)
