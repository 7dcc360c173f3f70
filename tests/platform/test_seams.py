"""The typed seams: what a profile cannot do is one NotSupportedError, the endpoint backend
interface is complete, reports are plain text when piped, `up --dry-run` is data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from chiml.cli.common import print_table
from chiml.cli.main import app
from chiml.config import load_config
from chiml.errors import NotFoundError, NotSupportedError
from chiml.sdk import Platform
from chiml.serving.backend import EndpointBackend


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "chiml.yaml").write_text(yaml.safe_dump({"profile": "local"}))
    monkeypatch.setenv("CHIML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_what_a_profile_cannot_do_is_one_kind_of_error(home: Path) -> None:
    kube = Platform(load_config(None, "kubernetes"))
    with pytest.raises(NotSupportedError, match="`chiml logs` is not available on the kubernetes profile"):
        list(kube.logs("mlflow"))
    local = Platform(load_config(None, "local"))
    assert local.secrets() == {} and local.tracking_credentials() == {}
    with pytest.raises(NotFoundError, match="no log for 'mlflow'"):
        list(local.logs("mlflow"))
    with pytest.raises(NotFoundError, match="no lease recorded"):
        local.lease.recorded()


def test_the_endpoint_interface_has_defaults_for_what_only_some_backends_do() -> None:
    class OneUrl(EndpointBackend):
        deploy = list = get = scale = delete = None  # type: ignore[assignment]

        def url(self, name: str) -> str:
            return f"http://{name}.example"

    backend = OneUrl()
    assert backend.urls("a") == ["http://a.example"] and backend.auth() is None
    with pytest.raises(NotSupportedError, match="kubectl"):
        backend.log_file("a")
    lines: list[str] = []
    backend.wait_all_ready(progress=lines.append)
    assert lines == []


def test_dry_run_is_a_plan_as_data(home: Path) -> None:
    result = CliRunner().invoke(app, ["up", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["profile"] == "local"
    (section,) = plan["sections"]
    assert section["columns"] == ["service", "url", "command"]
    services = " ".join(row[0] for row in section["rows"])
    assert "MLflow" in services and "TensorBoard" in services and "mlflow" in section["rows"][0][2]
    assert not (home / "home" / "state.json").exists()


def test_tables_are_plain_lines_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    long = "x" * 150
    print_table("title", ["name", "status", "detail"], [["a", "[green]ok[/]", long], ["bb", "down", "-"]])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "title" and out[1].split() == ["name", "status", "detail"]
    assert out[2].split() == ["a", "ok", long]  # markup dropped, nothing folded at 80 columns
    assert len(out) == 4 and not any(ch in "".join(out) for ch in "│┃━─")
