"""Keep the fake `terraform` honest against the real Terraform 1.11 (the pinned one in .tools/bin).

Two things are compared: every flag the fake accepts is accepted by the real binary's parser, and
the machine-readable output chiml reads (`version -json`, the `-json` UI stream of apply and
destroy, `output -json`, `state list`, `state rm`) has the same shape. The real binary runs on a
small configuration of `terraform_data` resources (built into Terraform: no provider download, no
network); the fake runs on the repository's own root configuration.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chiml.chameleon.terraform import Terraform
from chiml.chameleon.tfvars import terraform_source_dir
from chiml.tools import ToolError, find_tool
from tests.chameleon.fake_terraform import FLAGS

HERE = Path(__file__).parent
# Flags that take a value, with one the real parser accepts; the others are booleans.
VALUES = {"-var-file": "none.tfvars.json", "-input": "false", "-refresh": "false", "-lock": "false",
          "-lock-timeout": "1s", "-state": "none.tfstate", "-backup": "-", "-id": "x"}
UI_KEYS = {"@level", "@message", "@module", "@timestamp", "type"}
TINY = """
variable "name" {
  type = string
}
resource "terraform_data" "server" {
  input = var.name
}
module "server" {
  source = "./modules/m"
}
output "server" {
  value = { name = terraform_data.server.output }
}
"""


def real_terraform() -> str:
    try:
        binary = find_tool("terraform")
    except ToolError:
        pytest.skip("terraform not installed: run `make tools`")
    version = json.loads(subprocess.run([binary, "version", "-json"], capture_output=True, text=True).stdout)
    if not version["terraform_version"].startswith("1.11."):
        pytest.skip(f"not terraform 1.11: {version['terraform_version']}")
    return binary


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_IN_AUTOMATION": "1", **(env or {})})


def fake(tmp_path: Path) -> list[str]:
    """The fake as a command line (without a control file it behaves plainly)."""
    return [sys.executable, str(HERE / "fake_terraform.py")]


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture
def real_dir(tmp_path: Path) -> tuple[str, Path]:
    binary = real_terraform()
    work = tmp_path / "real"
    (work / "modules" / "m").mkdir(parents=True)
    (work / "main.tf").write_text(TINY)
    module = 'resource "terraform_data" "assoc" {\n  count = 1\n  input = "x"\n}\n'
    (work / "modules" / "m" / "main.tf").write_text(module)
    (work / "vars.tfvars.json").write_text(json.dumps({"name": "chiml-server"}))
    assert run([binary, "init", "-input=false", "-no-color"], work).returncode == 0
    return binary, work


@pytest.fixture
def fake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Path]:
    control = tmp_path / "control.json"
    control.write_text("{}")
    monkeypatch.setenv("FAKE_TF_CONTROL", str(control))
    work = Terraform.prepare(terraform_source_dir(), tmp_path / "fake" / "cluster")
    cmd = [sys.executable, str(HERE / "fake_terraform.py")]
    variables = {"deployment": "chiml", "key_name": "k", "admin_cidr": "198.51.100.7/32",
                 "server": {"reservation_id": "11111111-1111-4111-8111-111111111111"},
                 "floating_ip_address": "192.5.87.10",
                 "agents": {"gpu": {"count": 1, "reservation_id": "22222222-2222-4222-8222-222222222222"}}}
    (work / "vars.tfvars.json").write_text(json.dumps(variables))
    assert run([*cmd, "init", "-input=false", "-no-color"], work).returncode == 0
    return cmd, work


@pytest.mark.parametrize("command", sorted(FLAGS))
def test_every_flag_of_the_fake_is_a_real_flag(command: str, tmp_path: Path) -> None:
    binary = real_terraform()
    for flag in sorted(FLAGS[command]):
        arg = f"{flag}={VALUES[flag]}" if flag in VALUES else flag
        result = run([binary, *command.split(), arg], tmp_path)
        assert "flag provided but not defined" not in result.stderr, f"terraform {command} {arg}: {result.stderr}"
    # and the real parser rejects what the fake rejects, with the words chiml reports
    bogus = run([binary, *command.split(), "-force-bogus"], tmp_path)
    faked = run([*fake(tmp_path), *command.split(), "-force-bogus"], tmp_path)
    assert bogus.returncode == faked.returncode == 1
    assert "flag provided but not defined: -force-bogus" in bogus.stderr
    assert "flag provided but not defined: -force-bogus" in faked.stderr


def test_version_json_has_the_real_keys(tmp_path: Path) -> None:
    real = json.loads(run([real_terraform(), "version", "-json"], tmp_path).stdout)
    faked = json.loads(run([*fake(tmp_path), "version", "-json"], tmp_path).stdout)
    assert set(faked) == set(real)
    assert re.fullmatch(r"1\.11\.\d+", faked["terraform_version"])


def _shape(stream: list[dict[str, Any]]) -> dict[str, Any]:
    """What chiml reads of a UI stream: event types, the keys of each, summary and outputs."""
    by_type: dict[str, set[str]] = {}
    for event in stream:
        by_type.setdefault(event["type"], set()).update(event)
    summary = [e for e in stream if e["type"] == "change_summary"][-1]
    outputs = [e for e in stream if e["type"] == "outputs"][-1]  # the first is the plan's, without values
    return {"types": by_type, "changes": set(summary["changes"]),
            "output_keys": {k for v in outputs["outputs"].values() for k in v},
            "planned": next(e for e in stream if e["type"] == "outputs")["outputs"]}


def test_apply_destroy_and_output_have_the_real_shapes(real_dir, fake_dir) -> None:
    binary, real = real_dir
    cmd, faked = fake_dir
    apply = ["apply", "-auto-approve", "-input=false", "-json", "-var-file=vars.tfvars.json"]
    real_apply, fake_apply = run([binary, *apply], real), run([*cmd, *apply], faked)
    assert real_apply.returncode == fake_apply.returncode == 0, fake_apply.stdout + real_apply.stdout
    real_shape, fake_shape = _shape(events(real_apply.stdout)), _shape(events(fake_apply.stdout))
    for kind in ("version", "apply_start", "apply_complete", "change_summary", "outputs"):
        assert kind in real_shape["types"] and kind in fake_shape["types"], kind
        assert UI_KEYS <= fake_shape["types"][kind] <= real_shape["types"][kind] | {"hook"}, kind
    assert fake_shape["changes"] <= real_shape["changes"]
    assert fake_shape["output_keys"] == real_shape["output_keys"] == {"sensitive", "type", "value"}
    planned_keys = {k for v in fake_shape["planned"].values() for k in v}
    assert planned_keys == {k for v in real_shape["planned"].values() for k in v} == {"sensitive", "action"}

    real_out = json.loads(run([binary, "output", "-json"], real).stdout)
    fake_out = json.loads(run([*cmd, "output", "-json"], faked).stdout)
    assert {k for v in fake_out.values() for k in v} == {k for v in real_out.values() for k in v}

    destroy = ["destroy", "-auto-approve", "-input=false", "-json", "-var-file=vars.tfvars.json"]
    real_destroy, fake_destroy = run([binary, *destroy], real), run([*cmd, *destroy], faked)
    assert real_destroy.returncode == fake_destroy.returncode == 0
    real_types = [e["type"] for e in events(real_destroy.stdout)]
    fake_types = [e["type"] for e in events(fake_destroy.stdout)]
    order = ("version", "planned_change", "change_summary", "outputs", "apply_start", "apply_complete")
    assert [k for k in dict.fromkeys(fake_types) if k in order] == [k for k in dict.fromkeys(real_types) if k in order]
    real_summary = [e for e in events(real_destroy.stdout) if e["type"] == "change_summary"][-1]
    fake_summary = [e for e in events(fake_destroy.stdout) if e["type"] == "change_summary"][-1]
    assert real_summary["changes"]["operation"] == fake_summary["changes"]["operation"] == "destroy"
    assert re.fullmatch(r"Destroy complete! Resources: \d+ destroyed\.", fake_summary["@message"])
    assert re.fullmatch(r"Destroy complete! Resources: \d+ destroyed\.", real_summary["@message"])
    assert run([binary, "output", "-json"], real).stdout.strip() == run([*cmd, "output", "-json"], faked).stdout.strip()


def test_state_list_and_rm_behave_like_the_real_ones(real_dir, fake_dir, tmp_path: Path) -> None:
    binary, real = real_dir
    cmd, faked = fake_dir
    # no state yet: both refuse
    empty = tmp_path / "empty"
    empty.mkdir()
    for tool in ([binary], cmd):
        result = run([*tool, "state", "list"], empty)
        assert result.returncode == 1 and "No state file was found!" in result.stderr
    apply = ["apply", "-auto-approve", "-input=false", "-json", "-var-file=vars.tfvars.json"]
    assert run([binary, *apply], real).returncode == run([*cmd, *apply], faked).returncode == 0
    for tool, work, victim in (([binary], real, "module.server.terraform_data.assoc[0]"),
                               (cmd, faked, "module.server.openstack_networking_floatingip_associate_v2.server[0]")):
        listed = run([*tool, "state", "list"], work)
        assert listed.returncode == 0 and victim in listed.stdout.splitlines()
        removed = run([*tool, "state", "rm", victim], work)
        assert removed.returncode == 0
        assert removed.stdout.splitlines() == [f"Removed {victim}", "Successfully removed 1 resource instance(s)."]
        assert victim not in run([*tool, "state", "list"], work).stdout.splitlines()
        assert list(work.glob("terraform.tfstate.*.backup")), "state rm keeps a backup"
        again = run([*tool, "state", "rm", victim], work)
        assert again.returncode == 1 and "Invalid target address" in again.stderr
