"""What `chiml up --dry-run` returns: a plan in titled sections, computed without touching anything.

Library code builds it as data; only the CLI renders it (text on a terminal or in a log, JSON
with ``--json``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PlanSection:
    """One part of a dry-run plan: a title, lines of text, and optionally a table."""

    title: str
    lines: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class UpPlan:
    """What `up` would do, computed without touching anything (`chiml up --dry-run`)."""

    profile: str
    sections: list[PlanSection] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
