"""chiml.yaml loading and validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chiml.config import load_config, parse_config
from chiml.errors import ConfigError
from chiml.paths import find_config, find_home


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("CHIML_HOME", raising=False)
    loaded = load_config(cwd=tmp_path)
    assert loaded.path is None
    assert loaded.profile == "local"
    assert loaded.config.local.ports.mlflow == 5000
    assert loaded.home == tmp_path.resolve() / ".chiml"


def test_example_config_is_valid_and_documents_every_section():
    root = Path(__file__).resolve().parents[2]
    import yaml

    text = (root / "chiml.example.yaml").read_text()
    cfg = parse_config(yaml.safe_load(text), "chiml.example.yaml")
    for section in ("local", "chameleon", "kubernetes", "serving", "training", "optimize"):
        assert f"\n{section}:" in text, f"chiml.example.yaml lacks the {section} section"
        assert getattr(cfg, section) is not None
    assert text.count("#") > 30, "the example must explain its settings with comments"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"local": {"ports": {"mlflow": 80}}}, "local.ports.mlflow: Input should be greater than or equal to 1024"),
        ({"local": {"databse": "sqlite"}}, "local.databse: Extra inputs are not permitted"),
        ({"local": {"database": "mysql"}}, "local.database: Input should be 'sqlite' or 'postgresql'"),
        ({"profile": "aws"}, "profile: Input should be 'local', 'chameleon' or 'kubernetes'"),
        ({"local": {"endpoint_ports": "9200-9100"}}, "local.endpoint_ports: Value error, must be LOW-HIGH"),
        ({"local": {"ports": {"mlflow": 6006}}}, "both 6006"),
        ({"local": {"host": "0.0.0.0"}}, "local.host"),
        # a key that would break the line is quoted (found by the fuzzing in tests/reliability)
        ({"\n": 1}, "chiml.yaml: '\\n': Extra inputs are not permitted"),
        ({"local": {"a\tb": 1}}, "local.'a\\tb': Extra inputs"),
    ],
)
def test_bad_values_name_the_field(document, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(document, "chiml.yaml")
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config(["local"], "chiml.yaml")


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "chiml.yaml"
    path.write_text("local:\n  ports: {mlflow: 5000\n")
    with pytest.raises(ConfigError, match=r"line \d+: not valid YAML"):
        load_config(path)


def test_profile_override_and_unknown_profile(tmp_path):
    path = tmp_path / "chiml.yaml"
    path.write_text("profile: local\n")
    assert load_config(path, profile="kubernetes").profile == "kubernetes"
    with pytest.raises(ConfigError, match="unknown profile 'aws'"):
        load_config(path, profile="aws")


def test_config_found_in_a_parent_and_home_beside_it(tmp_path, monkeypatch):
    monkeypatch.delenv("CHIML_HOME", raising=False)
    (tmp_path / "chiml.yaml").write_text("profile: local\n")
    nested = tmp_path / "notebooks" / "deep"
    nested.mkdir(parents=True)
    assert find_config(cwd=nested) == (tmp_path / "chiml.yaml").resolve()
    assert find_home(find_config(cwd=nested), cwd=nested) == tmp_path.resolve() / ".chiml"


def test_chiml_home_env_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("CHIML_HOME", str(tmp_path / "elsewhere"))
    (tmp_path / "chiml.yaml").write_text("{}\n")
    assert load_config(cwd=tmp_path).home == (tmp_path / "elsewhere").resolve()


def test_existing_home_found_from_a_subfolder_without_config(tmp_path, monkeypatch):
    monkeypatch.delenv("CHIML_HOME", raising=False)
    (tmp_path / ".chiml").mkdir()
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert find_home(None, cwd=sub) == (tmp_path / ".chiml").resolve()


def test_cli_prints_one_line_not_a_traceback(tmp_path):
    path = tmp_path / "chiml.yaml"
    path.write_text("local:\n  ports:\n    mlflow: not-a-port\n")
    result = subprocess.run(
        [sys.executable, "-m", "chiml.cli.main", "status", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "local.ports.mlflow" in lines[0] and "integer" in lines[0]
