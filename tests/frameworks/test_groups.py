"""The framework groups: pins that never fight the platform's, and `chiml frameworks list`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chiml.frameworks import GROUPS, group_pins, inspect, requirements_dir

REPO = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _base_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            pins[_norm(name)] = version
    return pins


def test_every_group_has_a_file_and_only_exact_pins() -> None:
    files = {path.stem for path in requirements_dir().glob("*.txt")}
    assert files == set(GROUPS) - {"base"}
    for group in files:
        for line in (requirements_dir() / f"{group}.txt").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9_.+\-]*", line), f"{group}: {line!r}"


def test_groups_never_repin_the_platform_and_agree_with_each_other() -> None:
    base = _base_pins()
    seen: dict[str, tuple[str, str]] = {}
    for group in set(GROUPS) - {"base"}:
        for name, version in group_pins(group).items():
            key = _norm(name)
            assert key not in base, f"{group} re-pins {name} (the platform pins {base[key]})"
            if key in seen:
                assert seen[key][1] == version, f"{name}: {seen[key][0]} pins {seen[key][1]}, {group} pins {version}"
            seen[key] = (group, version)
    assert "torch" not in seen  # the CPU torch of the platform pins is the only torch


def test_unknown_group_is_one_clear_error() -> None:
    from chiml.errors import ChimlError

    with pytest.raises(ChimlError, match="unknown framework group"):
        inspect(groups=("nope",))


def test_frameworks_list_json_reports_installed_versions() -> None:
    pytest.importorskip("xgboost", reason="the framework groups are not installed: run `make frameworks`")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "chiml"), "frameworks", "list", "--json"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = {f["name"]: f for f in json.loads(done.stdout)}
    assert set(found) == {name for names in GROUPS.values() for name in names}
    pins = {_norm(n): v for group in set(GROUPS) - {"base"} for n, v in group_pins(group).items()}
    for name, framework in found.items():
        assert framework["installed"], f"{name}: {framework['detail']}"
        pinned = pins.get(_norm(name)) or pins.get(f"{_norm(name)}-cpu")
        if pinned:
            assert framework["version"] == pinned, name
        assert framework["gpu"] in (True, False, None)
    assert found["torch"]["version"].startswith(_base_pins()["torch"])
