"""scoped_environ restores the environment whatever happens in the block."""

from __future__ import annotations

import os

import pytest

from chiml.environ import scoped_environ


def test_override_and_restore(monkeypatch):
    monkeypatch.setenv("CHIML_T_A", "user")
    monkeypatch.delenv("CHIML_T_B", raising=False)
    with pytest.raises(RuntimeError), scoped_environ({"CHIML_T_A": "ours", "CHIML_T_B": "new"}):
        assert os.environ["CHIML_T_A"] == "ours"
        assert os.environ["CHIML_T_B"] == "new"
        raise RuntimeError("boom")
    assert os.environ["CHIML_T_A"] == "user"
    assert "CHIML_T_B" not in os.environ


def test_without_override_the_users_value_wins(monkeypatch):
    monkeypatch.setenv("CHIML_T_A", "user")
    monkeypatch.delenv("CHIML_T_B", raising=False)
    with scoped_environ({"CHIML_T_A": "ours", "CHIML_T_B": "default"}, override=False):
        assert os.environ["CHIML_T_A"] == "user"
        assert os.environ["CHIML_T_B"] == "default"
    assert os.environ["CHIML_T_A"] == "user"
    assert "CHIML_T_B" not in os.environ
