"""The `chameleon:` section: validation and the documented example."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chiml.config import parse_config
from chiml.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "chameleon.example-section.yaml"


def _uncomment(block: str) -> dict:
    lines = [line[2:] for line in block.splitlines() if line.startswith(("# chameleon:", "#   "))]
    return yaml.safe_load("\n".join(lines))


def test_documented_examples_are_valid() -> None:
    bare_metal, kvm = EXAMPLE.read_text().split("# KVM@TACC example")
    assert parse_config(_uncomment(bare_metal)).chameleon.gpu_agents.node_type == "gpu_rtx_6000"
    assert parse_config(_uncomment(kvm)).chameleon.is_kvm


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"lease_hours": 200}, "lease_hours"),
        ({"admin_cidr": "not-a-cidr"}, "IPv4 CIDR"),
        ({"gpu_image": "CC-Ubuntu22.04"}, "-CUDA"),
        ({"image": "Ubuntu"}, "CC-Ubuntu22.04"),
        ({"server": {"count": 2, "node_type": "compute_cascadelake_r"}}, "server.count must be 1"),
        ({"gpu_agents": {"count": 2, "node_name": "P3-GPU-009"}}, "count must be 1"),
        ({"gpu_agents": {"count": 1, "node_type": "gpu_rtx_6000", "flavor": "x"}}, "not node_type and flavor"),
        ({"site": "CHI@UC", "gpu_agents": {"count": 1, "flavor": "g1.h100.pci.1"}}, "reserves hosts"),
        ({"k3s_version": "latest"}, "v1.33.2"),
        ({"deployment": "My_Cluster"}, "lower-case"),
        ({"typo": 1}, "Extra inputs"),
    ],
)
def test_invalid_sections_are_one_line_errors(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"chameleon": section})
