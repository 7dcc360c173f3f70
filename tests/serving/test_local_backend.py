"""LocalEndpoints against a real supervisord (no MLflow needed: models deployed from folders).

The failure paths matter most here: whatever a failed deploy added (state entry, folder,
supervisor program, log, process) must be gone afterwards.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from chiml.config import load_config
from chiml.errors import ChimlError
from chiml.serving.local import STATE_KEY, LocalEndpoints
from tests.conftest import write_local_config
from tests.serving.conftest import Digits


def _profile(directory: Path, monkeypatch: pytest.MonkeyPatch, **local: object):  # -> LocalProfile
    from chiml.profiles.local import LocalProfile

    monkeypatch.delenv("CHIML_HOME", raising=False)
    return LocalProfile(load_config(write_local_config(directory, **local)))


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalEndpoints]:
    profile = _profile(tmp_path, monkeypatch)
    profile.supervisor.write_config()
    profile.supervisor.start()
    try:
        yield LocalEndpoints(profile)
    finally:
        profile.supervisor.shutdown()


def _serving_processes(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "chiml_serving" in cmdline and any(str(home) in part for part in cmdline):
            found.append(proc)
    return found


def _assert_nothing_left(backend: LocalEndpoints, name: str) -> None:
    assert name not in (backend.state.get(STATE_KEY) or {})
    assert not (backend.root / name).exists()
    assert not [p for p in backend.supervisor.program_names() if p.startswith(f"endpoint-{name}-")]
    assert not list(backend.supervisor.logs.glob(f"endpoint-{name}-*"))
    for program in (f"endpoint-{name}-0", f"endpoint-{name}-front", f"endpoint-{name}-autoscaler"):
        assert backend.supervisor.program_info(program) is None
    assert not _serving_processes(backend.home)


def test_model_that_cannot_load_leaves_nothing_behind(backend: LocalEndpoints, digits: Digits, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(digits.model_dir, broken)
    (broken / "model.skops").write_text("not a model")
    with pytest.raises(ChimlError) as caught:
        backend.deploy(str(broken), "broken")
    # the error says why, from the endpoint's own log
    assert "endpoint broken exited while loading the model" in caught.value.message
    assert "BadZipFile" in str(caught.value)
    _assert_nothing_left(backend, "broken")


def test_rejections_before_anything_starts(backend: LocalEndpoints, digits: Digits, tmp_path: Path) -> None:
    with pytest.raises(ChimlError, match="invalid endpoint name 'Digits_1'"):
        backend.deploy(str(digits.model_dir), "Digits_1")
    with pytest.raises(ChimlError, match="no such path"):
        backend.deploy(str(tmp_path / "missing"), "missing")
    _assert_nothing_left(backend, "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ChimlError, match="not an MLflow model"):
        backend.deploy(str(tmp_path / "plain"), "plain")
    _assert_nothing_left(backend, "plain")
    with pytest.raises(ChimlError, match="unknown runtime 'mlflw'"):  # said by the optimizer's resolver
        backend.deploy(str(digits.model_dir), "typo", runtime="mlflw")
    _assert_nothing_left(backend, "typo")
    with pytest.raises(ChimlError, match="no endpoint named 'ghost'"):
        backend.delete("ghost")
    assert backend.list() == []


def test_platform_not_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits: Digits) -> None:
    backend = LocalEndpoints(_profile(tmp_path, monkeypatch))
    with pytest.raises(ChimlError, match="the local platform is not running"):
        backend.deploy(str(digits.model_dir), "digits")
    assert backend.state.get(STATE_KEY) is None


def test_port_allocation_skips_used_and_busy_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import free_port_range

    low = int(free_port_range(3).split("-")[0])
    profile = _profile(tmp_path, monkeypatch, endpoint_ports=f"{low}-{low + 2}")
    backend = LocalEndpoints(profile)
    doc = {STATE_KEY: {"other": {"ports": [low]}}}  # a record of an older chiml: replica ports only
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", low + 1))
        busy.listen()
        assert backend._allocate(doc, 1) == [low + 2]
        # an endpoint's front port and its replicas' ports are all taken
        taken = {STATE_KEY: {"other": {"port": low + 2, "replicas": [{"id": 0, "port": low}]}}}
        with pytest.raises(ChimlError, match="no free port left"):
            backend._allocate(taken, 1)
        with pytest.raises(ChimlError, match=f"no free port left in local.endpoint_ports \\({low}-{low + 2}\\)"):
            backend._allocate(doc, 2)


def test_a_deploy_killed_half_way_is_replaced_by_the_next_one(backend: LocalEndpoints, digits: Digits) -> None:
    """A CLI killed mid-deploy leaves a `deploying` record (and maybe programs): the next deploy
    of that name, holding the endpoint's lock, clears it and deploys afresh."""
    with backend.state.edit() as doc:
        doc.setdefault(STATE_KEY, {})["halfway"] = {
            "model_uri": "gone", "runtime": "mlflow", "workers": 1, "port": 1, "status": "deploying",
            "replicas": [{"id": 0, "port": 2, "model_dir": "rev-1/model", "runtime": "mlflow", "workers": 1}],
        }  # fmt: skip
    (backend.root / "halfway" / "rev-1").mkdir(parents=True)
    endpoint = backend.deploy(str(digits.model_dir), "halfway")
    assert endpoint.status == "ready" and endpoint.model_uri == str(digits.model_dir)
    assert 1 not in endpoint.ports and endpoint.url != "http://127.0.0.1:1"
    backend.delete("halfway")
    _assert_nothing_left(backend, "halfway")
