"""`chiml smoke`'s runner: a run that checked nothing fails, a run that checked something reports it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chiml.smoke import NOTHING_CHECKED, run_smoke

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """What `chiml smoke` runs (run_smoke), in a child so that its output can be read."""
    code = ("import sys; from chiml.smoke import run_smoke; "
            f"sys.exit(run_smoke({list(args)!r}, {env or {}!r}, ['-o', 'addopts=']).returncode)")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "CHIML_SMOKE_NODES"})


def test_every_check_skipped_fails(tmp_path: Path) -> None:
    """The node suite without nodes to check skips everything: that is a failure, not a pass."""
    result = _run(tmp_path, str(ROOT / "smoke_tests" / "nodes"))
    assert result.returncode == 1, result.stdout[-2000:]
    assert "7 skipped in" in result.stdout and " passed in" not in result.stdout
    assert NOTHING_CHECKED in result.stdout


def test_a_run_with_a_passing_check_passes(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_x.py").write_text(
        "import pytest\n\ndef test_ok():\n    assert 1 + 1 == 2\n\n"
        "def test_gpu_only():\n    pytest.skip('GPU-only check')\n")
    result = _run(tmp_path, str(suite))
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 passed, 1 skipped" in result.stdout and NOTHING_CHECKED not in result.stdout


def test_a_failing_check_still_fails(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_x.py").write_text("def test_bad():\n    assert False\n")
    assert _run(tmp_path, str(suite)).returncode == 1


def test_run_smoke_returns_pytests_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CHIML_SMOKE_NODES", raising=False)
    monkeypatch.chdir(tmp_path)
    assert run_smoke([str(ROOT / "smoke_tests" / "nodes")], {}, ["-o", "addopts="]).returncode == 1
    assert NOTHING_CHECKED in capfd.readouterr().out


def test_node_suite_on_this_machine_checks_for_real(tmp_path: Path) -> None:
    """Against this machine through testinfra's local backend: each check's verdict follows what is installed."""
    nodes = '[{"name": "local", "role": "server", "gpu": true}]'
    junit = tmp_path / "junit.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "smoke_tests" / "nodes"), "--hosts=local://", "-q",
         "-p", "no:cacheprovider", "-o", "addopts=", f"--junitxml={junit}"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "CHIML_SMOKE_NODES": nodes}, timeout=120,
    )
    cases = {case.get("name", "").split("[")[0]: case for case in ET.parse(junit).getroot().iter("testcase")}
    failed = {name for name, case in cases.items() if case.find("failure") is not None or case.find("error")}
    assert len(cases) == 7, result.stdout[-2000:]
    if shutil.which("k3s") is None:  # every k3s check must fail where there is no k3s
        assert {"test_k3s_service_is_active_and_enabled", "test_every_node_is_ready"} <= failed
    if shutil.which("nvidia-smi") is None:
        assert "test_nvidia_smi_sees_a_gpu" in failed
    assert result.returncode == (1 if failed else 0)
