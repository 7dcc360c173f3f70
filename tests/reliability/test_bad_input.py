"""Bad input gets one clear line, never a traceback: config files, state, CLI arguments, URIs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chiml.config import load_config
from chiml.errors import ChimlError
from tests.conftest import write_local_config
from tests.platform.test_local_e2e import chiml

SECTIONS = ["profile", "local", "training", "serving", "optimize", "kubernetes", "chameleon"]
LOCAL_KEYS = ["database", "ports", "endpoint_ports", "services", "host", "health_timeout_s", "postgresql"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.text(max_size=30)
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)  # noqa: E501
documents = st.one_of(
    values,
    st.dictionaries(st.sampled_from(SECTIONS), values, max_size=4),
    st.fixed_dictionaries({"local": st.dictionaries(st.sampled_from(LOCAL_KEYS), values, max_size=4)}),
)


def _one_line(err: ChimlError) -> None:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents)
def test_any_yaml_config_is_accepted_or_one_clear_error(tmp_path: Path, document: object):
    path = tmp_path / "chiml.yaml"
    try:
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
    except yaml.YAMLError:
        return
    try:
        load_config(path, cwd=tmp_path)
    except ChimlError as err:
        _one_line(err)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_any_bytes_as_config_are_accepted_or_one_clear_error(tmp_path: Path, raw: bytes):
    path = tmp_path / "chiml.yaml"
    path.write_bytes(raw)
    try:
        load_config(path, cwd=tmp_path)
    except ChimlError as err:
        _one_line(err)


BAD_CALLS = [
    ["train", "no/such/script.py"],
    ["train", "examples/tabular_sklearn/train.py", "--param", "epochs"],
    ["train", "examples/tabular_sklearn/train.py", "--param", "=3"],
    ["deploy", "not-a-uri", "--name", "x"],
    ["deploy", "models:/", "--name", "x"],
    ["deploy", "models:/digits@", "--name", "x"],
    ["deploy", "runs:/", "--name", "x"],
    ["deploy", "models:/digits/notanumber", "--name", "x"],
    ["deploy", "models:/digits/1", "--name", "Bad Name!"],
    ["predict", "no-such-endpoint", "--file", "examples/digits_torch/sample.json"],
    ["endpoints", "delete", "no-such-endpoint"],
    ["endpoints", "scale", "no-such-endpoint", "2"],
    ["models", "describe", "no-such-model"],
    ["optimize", "models:/no-such-model/1"],
    ["up", "--profile", "no-such-profile"],
    ["logs", "no-such-service"],
]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("badinput")
    write_local_config(directory)
    chiml("up", cwd=directory)
    yield directory
    chiml("down", cwd=directory, check=False)


@pytest.mark.e2e
@pytest.mark.parametrize("args", BAD_CALLS, ids=lambda a: " ".join(a))
def test_bad_cli_input_is_one_clear_line(running: Path, args: list[str]):
    repo = Path(__file__).resolve().parents[2]
    fixed = [str(repo / a) if a.startswith("examples/") else a for a in args]
    result = chiml(*fixed, cwd=running, check=False)
    assert result.returncode != 0, result.stdout
    output = result.stderr + result.stdout
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, output
