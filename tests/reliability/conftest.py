"""The reliability suite (`make reliability`): crashes, bad input, concurrency and exposure.

Each test that measures something records it with the ``figures`` fixture; the figures are
printed at the end of the run (and written as JSON to $CHIML_RELIABILITY_REPORT when set) so
that they can be quoted, instead of being asserted against a wall-clock limit.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

_FIGURES: dict[str, Any] = {}


@pytest.fixture
def figures() -> dict[str, Any]:
    return _FIGURES


def remove_postgres_data(home: Path) -> None:
    """`chiml down` keeps the data. Run as root, a test's managed PostgreSQL lives outside its
    temporary folder (/var/lib/chiml/<id>/postgresql: the postgres user cannot enter /tmp's
    private pytest folders), so the test removes that cluster itself once it is down."""
    link = home / "data" / "postgresql"
    if link.is_symlink():
        cluster = link.resolve().parent
        if cluster.parent == Path("/var/lib/chiml"):
            shutil.rmtree(cluster, ignore_errors=True)


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
