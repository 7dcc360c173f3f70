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


def _pins(path: Path) -> dict[str, str]:
    """norm(name) -> version of a pin file (extras dropped: `tensorflow[and-cuda]` pins tensorflow)."""
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            exact = r"[A-Za-z0-9_.\-]+(\[[a-z0-9\-,]+\])?==[0-9][A-Za-z0-9_.+\-]*"
            assert re.fullmatch(exact, line), f"{path}: {line!r}"
            name, version = line.split("==")
            pins[_norm(name.split("[")[0])] = version
    return pins


def test_cuda_builds_pin_the_same_versions_and_only_swap_the_cpu_distributions() -> None:
    """services/trainer/frameworks/cuda (scripts/lock_cuda.py): what a CUDA trainer variant
    installs instead of a group's file. Same versions as the CPU group and the platform (a model
    trained on a GPU node loads on the CPU serving runtimes), NVIDIA's libraries added, and one
    version of every package across all CUDA files (the CUDA notebooks variant holds them all)."""
    cuda_dir = requirements_dir() / "cuda"
    base = _base_pins()
    files = {path.stem: _pins(path) for path in sorted(cuda_dir.glob("*.txt"))}
    assert "base" in files and set(files) - {"base"} <= set(GROUPS)
    assert any(name.startswith("nvidia-") for name in files["base"]), "base.txt: the CUDA torch's libraries"
    swapped = {"xgboost-cpu": "xgboost", "tensorflow-cpu": "tensorflow"}
    seen: dict[str, tuple[str, str]] = {}
    for group, pins in files.items():
        for name, version in pins.items():
            assert name not in base, f"cuda/{group}.txt re-pins {name} (the platform pins {base[name]})"
            if name in seen:
                assert seen[name][1] == version, f"{name}: cuda/{seen[name][0]} and cuda/{group} disagree"
            seen[name] = (group, version)
        if group == "base":
            continue
        cpu = {_norm(n): v for n, v in group_pins(group).items()}
        for name, version in cpu.items():
            target = swapped.get(name, name)
            assert pins.get(target) == version, f"cuda/{group}.txt: {target} must stay at the CPU pin {version}"
        assert not set(swapped) & set(pins), f"cuda/{group}.txt keeps a CPU-only distribution"
    assert "torch" not in seen  # PyPI's torch 2.13.0 is the CUDA build: the version is the platform's
    assert "jax-cuda13-plugin" in files["jax"] and "nvidia-cudnn-cu12" in files["tensorflow"]
