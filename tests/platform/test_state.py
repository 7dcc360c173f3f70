"""Versioned, atomic state."""

from __future__ import annotations

import json

import pytest

from chiml import state as state_mod
from chiml.errors import StateError
from chiml.state import STATE_VERSION, StateStore


def test_round_trip_and_version(tmp_path):
    store = StateStore(tmp_path)
    store.set("endpoints", {"digits": {"port": 9100}})
    doc = json.loads((tmp_path / "state.json").read_text())
    assert doc["version"] == STATE_VERSION
    assert store.get("endpoints") == {"digits": {"port": 9100}}


def test_edit_that_raises_writes_nothing(tmp_path):
    store = StateStore(tmp_path)
    store.set("a", 1)
    with pytest.raises(RuntimeError), store.edit() as doc:
        doc["a"] = 2
        raise RuntimeError("boom")
    assert store.get("a") == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".state.")] == []


def test_corrupt_file_is_a_clear_error(tmp_path):
    (tmp_path / "state.json").write_text('{"version": 1, "local": ')
    with pytest.raises(StateError, match="corrupt"):
        StateStore(tmp_path).load()


def test_newer_version_is_refused(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"version": STATE_VERSION + 1}))
    with pytest.raises(StateError, match="upgrade chiml"):
        StateStore(tmp_path).load()


def test_migrations_run_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(state_mod, "STATE_VERSION", 3)
    monkeypatch.setattr(
        state_mod,
        "MIGRATIONS",
        {1: lambda d: {"version": d["version"], "renamed": d["old"]}, 2: lambda d: {**d, "added": True}},
    )
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "old": "x"}))
    doc = state_mod.StateStore(tmp_path).load()
    assert doc == {"version": 3, "renamed": "x", "added": True}
