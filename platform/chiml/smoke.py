"""`chiml smoke`: run a profile's pytest-testinfra suite against the running platform.

The suite runs in its own pytest process with this module loaded as a plugin (``-p chiml.smoke``).
The plugin turns "nothing was checked" into a failure: when every check was skipped (no host
answered, the suite found no nodes, the environment was not set) pytest itself would exit 0, and a
smoke run that checked nothing must never read as a pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

NOTHING_CHECKED = "chiml smoke: no check passed (all were skipped): nothing answered, so nothing was verified"
_counts = {"passed": 0, "skipped": 0}


@dataclass(frozen=True)
class SmokeResult:
    returncode: int


def run_smoke(args: list[str], env: dict[str, str], extra: list[str] | None = None) -> SmokeResult:
    """Run pytest on ``args`` with ``env`` added; the output goes to this process's stdout/stderr."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "chiml.smoke", *args, *(extra or [])]
    result = subprocess.run(cmd, env={**os.environ, **env}, check=False)
    return SmokeResult(result.returncode)


# ---------------------------------------------------------------- pytest plugin hooks
def pytest_runtest_logreport(report: Any) -> None:
    if report.when == "call" and report.passed:
        _counts["passed"] += 1
    elif report.skipped:
        _counts["skipped"] += 1


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    # pytest returns session.exitstatus after this hook: a run where nothing passed fails.
    if int(exitstatus) in (0, 5) and _counts["passed"] == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _counts["passed"] == 0:
        terminalreporter.write_line(NOTHING_CHECKED, red=True)
