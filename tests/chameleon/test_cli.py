"""The command line on the chameleon profile: the dry run on a fresh clone, and `chiml lease`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chiml.chameleon.deployment import STATE_KEY, ChameleonDeployment, Dependencies
from chiml.chameleon.lease import LeaseClient
from chiml.config import load_config
from chiml.state import StateStore
from tests.chameleon.fakes import FakeChameleon, FakeNodes


def test_dry_run_prints_a_complete_plan_and_touches_nothing(tmp_path: Path, fake_terraform) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_") and k != "CHIML_HOME"}
    result = subprocess.run(
        [sys.executable, "-m", "chiml.cli.main", "up", "--profile", "chameleon", "--dry-run"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "dry run: nothing is reserved or created" in out
    lease = json.loads(out[out.index("Lease request:\n") + 15: out.index("\n}\n", out.index("Lease request:")) + 2])
    assert [r.get("node_type") for r in lease["reservations"][:2]] == ["compute_cascadelake_r", "gpu_rtx_6000"]
    assert lease["reservations"][2]["type"] == "virtual:floatingip" and lease["duration_hours"] == 24
    header = "Terraform variables (terraform/):\n"
    tfvars_at = out.index(header) + len(header)
    tfvars = json.loads(out[tfvars_at: out.index("\n}\n", tfvars_at) + 2])
    assert tfvars["server"]["reservation_id"] == "<from the lease>" and tfvars["agents"]["gpu"]["count"] == 1
    assert "OS_AUTH_URL is not set" in out and "chameleon.key_name is not set" in out
    assert "k3s v1.33.2+k3s1: wait up to 2400 s for nodes chiml-<user>-server, chiml-<user>-gpu-0" in out
    assert not (tmp_path / ".chiml").exists()
    assert fake_terraform.calls() == []


@pytest.fixture
def deployed(fake_chameleon: FakeChameleon, fake_terraform, credentials, fake_nodes: FakeNodes, write_config,
             monkeypatch: pytest.MonkeyPatch) -> Path:
    config = write_config()
    deps = Dependencies(lease_client=LeaseClient(poll_interval_s=0), connector=fake_nodes.connector, k3s_poll_s=0)
    ChameleonDeployment(load_config(config), deps).up(progress=lambda m: None)
    monkeypatch.chdir(config.parent)
    return config


def test_lease_show_json(deployed: Path, fake_chameleon: FakeChameleon) -> None:
    from chiml.cli.main import app

    result = CliRunner().invoke(app, ["lease", "show", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "ACTIVE" and data["floating_ip"] == "192.5.87.10"
    assert 23 <= data["hours_left"] <= 24


def test_lease_extend_updates_the_end(deployed: Path, fake_chameleon: FakeChameleon) -> None:
    from chiml.cli.main import app

    before = StateStore(deployed.parent / ".chiml").get(STATE_KEY)["lease"]["end"]
    result = CliRunner().invoke(app, ["lease", "extend", "--hours", "12"])
    assert result.exit_code == 0, result.output
    after = StateStore(deployed.parent / ".chiml").get(STATE_KEY)["lease"]["end"]
    from datetime import datetime

    assert (datetime.fromisoformat(after) - datetime.fromisoformat(before)).total_seconds() == 12 * 3600


def test_lease_delete_asks_then_deletes(deployed: Path, fake_chameleon: FakeChameleon) -> None:
    from chiml.cli.main import app

    refused = CliRunner().invoke(app, ["lease", "delete"], input="n\n")
    assert refused.exit_code != 0 and len(fake_chameleon.leases.live()) == 1
    result = CliRunner().invoke(app, ["lease", "delete", "--yes"])
    assert result.exit_code == 0, result.output
    assert fake_chameleon.leases.live() == []
    assert "chiml down" in result.output
