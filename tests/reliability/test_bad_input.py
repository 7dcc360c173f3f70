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


# ----------------------------------------------------------------- property tests over the CLI
# Arguments a user can type (no NUL, no lone surrogates: a real argv cannot carry them).
typed = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
numbers = st.one_of(st.integers(-(10**9), 10**9).map(str), typed)
# Model URIs that cannot name anything on this machine or off it: registry, run and artifact URIs
# of the platform's own (empty) server, and paths that do not exist. Never a bare path (an
# existing folder, "/" or ".", would be copied as a model) and never s3:// or http:// (off loopback).
model_uris = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(["models:/", "models:/m-", "runs:/", "mlflow-artifacts:/", "does-not-exist/"]),
    typed,
)
calls = st.one_of(
    st.tuples(st.just("endpoints"), st.just("scale"), typed, numbers),
    st.tuples(st.just("endpoints"), st.just("delete"), typed),
    st.tuples(st.just("models"), st.just("describe"), typed),
    st.builds(lambda uri, name: ("deploy", uri, "--name", name), model_uris, typed),
    st.builds(lambda uri, name, n: ("deploy", uri, "--name", name, "--replicas", n), model_uris, typed, numbers),
    st.builds(lambda name: ("predict", name, "--file", "does-not-exist.json"), typed),
    st.builds(lambda p: ("train", "does-not-exist/train.py", "--param", p), typed),
    st.builds(lambda n: ("tune", "does-not-exist/train.py", "--trials", n), numbers),
    st.builds(lambda name: ("logs", name), typed),
)


def _run_cli(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`chiml ARGS` in this process, as the console script runs it (main(): one-line errors)."""
    import sys

    from chiml.cli.main import main

    saved = sys.argv
    sys.argv = ["chiml", *args]
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        sys.argv = saved
    out, err = capfd.readouterr()
    return code, out + err


@pytest.mark.e2e
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(call=calls)
def test_any_cli_call_on_nothing_is_one_clear_line(running: Path, capfd: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch, figures: dict, call: tuple):
    """Calls naming endpoints, models, runs and files that do not exist, with any text in their
    arguments: a non-zero exit and exactly one error line, never a traceback, nothing made."""
    monkeypatch.chdir(running)
    monkeypatch.delenv("CHIML_HOME", raising=False)
    code, output = _run_cli(list(call), capfd)
    assert code != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, output
    figures["fuzzed CLI calls on nothing: one error line each"] = figures.get(
        "fuzzed CLI calls on nothing: one error line each", 0) + 1


@pytest.mark.e2e
def test_fuzzed_calls_left_nothing_behind(running: Path):
    """After the calls above (run first in this module): no endpoint, no endpoint folder or program."""
    from chiml import Platform
    from chiml.local.supervisor import Supervisor

    platform = Platform.connect(config=running / "chiml.yaml")
    assert platform.endpoints.list() == []
    home = running / ".chiml"
    # Only the empty per-name lock files may stay: unlinking a lock file another process may be
    # waiting on would let two changes of one endpoint hold "the" lock at once (two inodes).
    endpoints = home / "endpoints"
    entries = sorted(endpoints.rglob("*")) if endpoints.exists() else []
    lock_dir = endpoints / ".locks"
    left = [p for p in entries
            if p != lock_dir and not (p.parent == lock_dir and p.suffix == ".lock" and p.stat().st_size == 0)]
    assert left == []
    programs = sorted(p.stem for p in Supervisor(home).programs_dir.glob("*.conf"))
    assert "mlflow" in programs  # the platform's own programs are still there ...
    assert not [name for name in programs if name.startswith("endpoint-")], programs  # ... and no endpoint's
