"""The serving commands as a user runs them: help texts, JSON lists, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_local_config


def _chiml(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHIML_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "chiml.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli")
    write_local_config(directory)
    return directory


@pytest.mark.parametrize(
    "command",
    [["deploy"], ["predict"], ["endpoints"], ["endpoints", "list"], ["endpoints", "describe"],
     ["endpoints", "scale"], ["endpoints", "update"], ["endpoints", "delete"], ["endpoints", "logs"]],
)  # fmt: skip
def test_every_command_has_help(project: Path, command: list[str]) -> None:
    result = _chiml(project, *command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and len(result.stdout.splitlines()) > 5


def test_list_on_a_new_platform(project: Path) -> None:
    result = _chiml(project, "endpoints", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert "no endpoints" in _chiml(project, "endpoints", "list").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "digits"], "give exactly one of --file and --data"),
        (["predict", "digits", "--data", "[[1,"], "--data is not valid JSON"),
        (["predict", "digits", "--file", "nope.json"], "cannot read nope.json"),
        (["predict", "digits", "--data", "[[1]]"], "no endpoint named 'digits'"),
        (["endpoints", "delete", "digits"], "no endpoint named 'digits'"),
        (["endpoints", "scale", "digits", "2"], "the local platform is not running"),
        (["endpoints", "scale", "digits"], "give a number of replicas, or --min-replicas/--max-replicas"),
        (["endpoints", "scale", "digits", "--min-replicas", "3", "--max-replicas", "2"],
         "--min-replicas 3 is more than --max-replicas 2"),
        (["endpoints", "scale", "digits", "--max-replicas", "3", "--scale-metric", "memory"],
         "unknown scale metric 'memory': choose one of concurrency, cpu"),
        (["endpoints", "update", "digits", "models:/digits/2"], "no endpoint named 'digits'"),
        (["deploy", "models:/digits/1", "--name", "digits", "--dry-run"], "--dry-run is for cluster profiles"),
        (["deploy", "models:/digits@production", "--name", "Digits"], "invalid endpoint name 'Digits'"),
        (["deploy", "models:/digits@production", "--name", "digits"], "the local platform is not running"),
    ],
)
def test_errors_are_one_line(project: Path, args: list[str], message: str) -> None:
    result = _chiml(project, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
