"""The reliability suite (`make reliability`): crashes, bad input, concurrency and exposure.

Each test that measures something records it with the ``figures`` fixture; the figures are
printed at the end of the run (and written as JSON to $CHIML_RELIABILITY_REPORT when set) so
that they can be quoted, instead of being asserted against a wall-clock limit.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

_FIGURES: dict[str, Any] = {}


@pytest.fixture
def figures() -> dict[str, Any]:
    return _FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for key, value in _FIGURES.items():
        terminalreporter.write_line(f"{key}: {value}")
    report = os.environ.get("CHIML_RELIABILITY_REPORT")
    if report:
        with open(report, "w", encoding="utf-8") as handle:
            json.dump(_FIGURES, handle, indent=2, sort_keys=True)
