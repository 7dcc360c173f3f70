"""The command line's shape: every command module registered once, in order; one way to pass
--config/--profile, before or after the command (the later one wins)."""

from __future__ import annotations

import json
import pkgutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import chiml.cli
from chiml.cli.main import COMMANDS, app


def test_every_command_module_is_registered_once() -> None:
    modules = {m.name for m in pkgutil.iter_modules(chiml.cli.__path__)} - {"common", "main"}
    listed = [module.__name__.rsplit(".", 1)[1] for module in COMMANDS]
    assert sorted(listed) == sorted(modules) and len(set(listed)) == len(listed)
    names = [command.name for command in app.registered_commands]
    groups = [group.name for group in app.registered_groups]
    assert names[:6] == ["up", "down", "status", "logs", "smoke", "version"]
    assert names.index("train") < names.index("tune") < names.index("optimize") < names.index("deploy")
    assert groups == ["runs", "models", "endpoints", "lease", "images", "frameworks"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-p", "kubernetes", "status", "--json"], "kubernetes"),
        (["status", "-p", "kubernetes", "--json"], "kubernetes"),
        (["-p", "kubernetes", "status", "-p", "local", "--json"], "local"),
        (["status", "--json"], "local"),  # the file's profile
    ],
)
def test_profile_option_before_or_after_the_command(
    args: list[str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "chiml.yaml"
    config.write_text(yaml.safe_dump({"profile": "local"}))
    monkeypatch.setenv("CHIML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # nothing is up: status exits 1
    assert json.loads(result.stdout)["profile"] == expected


def test_config_option_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere.yaml"
    other.write_text(yaml.safe_dump({"profile": "kubernetes"}))
    monkeypatch.setenv("CHIML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["status", "--config", str(other), "--json"])
    assert json.loads(result.stdout)["profile"] == "kubernetes"
    missing = CliRunner().invoke(app, ["-c", str(tmp_path / "nope.yaml"), "status"])
    assert missing.exit_code != 0 and "config file not found" in str(missing.exception)
