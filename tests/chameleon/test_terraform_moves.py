"""A deployment made by an earlier layout of terraform/ keeps every node and rule: checked with the
real Terraform 1.11.

No provider can be downloaded here, so the check runs on a stand-in: every OpenStack resource
becomes a `terraform_data` (built into Terraform) named `<type>__<name>`, at the same module
paths, with the same count/for_each and the repository's own moved blocks (read from terraform/
and renamed the same way). The earlier layout (the commit before the one node module: modules
k3s-server and k3s-agents, one call per agent group, separate admin and ingress rules) is applied
first; then the current layout must plan no create and no destroy, only moves, and end with
the addresses the fake terraform creates.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from chiml.tools import ToolError, find_tool
from tests.chameleon.fake_terraform import planned_resources

TERRAFORM = Path(__file__).resolve().parents[2] / "terraform"

# One deployment: the server on a reserved floating IP, two CPU agents, one GPU agent.
VARIABLES = {"deployment": "chiml-abc123", "floating_ip_address": "192.5.87.10",
             "agents": {"cpu": {"count": 2}, "gpu": {"count": 1}}}
# resource instances per module call of the current layout ("T.N": count, or the for_each keys)
CURRENT = {
    "security_group": {"openstack_networking_secgroup_v2.this": None,
                       "openstack_networking_secgroup_rule_v2.tcp": ["ssh", "kube_api", "http", "https"],
                       "openstack_networking_secgroup_rule_v2.members": ["tcp", "udp", "icmp"]},
    "server": {"openstack_networking_floatingip_v2.allocated": 0, "openstack_networking_port_v2.server": 1,
               "openstack_compute_instance_v2.this": 1, "openstack_networking_floatingip_associate_v2.server": 1},
    'agents["cpu"]': {"openstack_networking_floatingip_v2.allocated": 0, "openstack_networking_port_v2.server": 0,
                      "openstack_compute_instance_v2.this": 2,
                      "openstack_networking_floatingip_associate_v2.server": 0},
    'agents["gpu"]': {"openstack_networking_floatingip_v2.allocated": 0, "openstack_networking_port_v2.server": 0,
                      "openstack_compute_instance_v2.this": 1,
                      "openstack_networking_floatingip_associate_v2.server": 0},
}

# The earlier layout, as the stand-in of that commit's terraform/cluster and modules.
EARLIER = {
    "main.tf": """
resource "terraform_data" "random_password__k3s_token" {}
module "security_group" {
  source = "../modules/security-group"
}
module "server" {
  source = "../modules/k3s-server"
}
module "cpu_agents" {
  source = "../modules/k3s-agents"
  n      = 2
}
module "gpu_agents" {
  source = "../modules/k3s-agents"
  n      = 1
}
""",
    "modules/security-group/main.tf": """
resource "terraform_data" "openstack_networking_secgroup_v2__this" {}
resource "terraform_data" "openstack_networking_secgroup_rule_v2__admin" {
  for_each = toset(["ssh", "kube_api"])
}
resource "terraform_data" "openstack_networking_secgroup_rule_v2__ingress" {
  for_each = toset(["http", "https"])
}
resource "terraform_data" "openstack_networking_secgroup_rule_v2__members" {
  for_each = toset(["tcp", "udp", "icmp"])
}
""",
    "modules/k3s-server/main.tf": """
resource "terraform_data" "openstack_networking_floatingip_v2__allocated" {
  count = 0
}
resource "terraform_data" "openstack_networking_port_v2__server" {}
resource "terraform_data" "openstack_compute_instance_v2__server" {}
resource "terraform_data" "openstack_networking_floatingip_associate_v2__server" {}
""",
    "modules/k3s-agents/main.tf": """
variable "n" {
  type = number
}
resource "terraform_data" "openstack_compute_instance_v2__agent" {
  count = var.n
}
""",
}


def unq(value: Any) -> str:
    return str(value)[1:-1] if str(value).startswith('"') and str(value).endswith('"') else str(value)


def blocks(directory: Path, kind: str) -> list[Any]:
    found: list[Any] = []
    for path in sorted(directory.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            found.extend(hcl2.load(handle).get(kind, []))
    return found


def stand_in_address(text: str) -> str:
    """`openstack_x.name[0]` -> `terraform_data.openstack_x__name[0]` (module paths unchanged)."""
    return re.sub(r"\b(openstack_\w+|random_password)\.(\w+)", r"terraform_data.\1__\2", text)


def moved_blocks(directory: Path) -> str:
    out = []
    for block in blocks(directory, "moved"):
        source = stand_in_address(block["from"].removeprefix("${").removesuffix("}"))
        target = stand_in_address(block["to"].removeprefix("${").removesuffix("}"))
        out.append(f"moved {{\n  from = {source}\n  to   = {target}\n}}\n")
    return "".join(out)


def resources(directory: Path) -> dict[str, dict[str, Any]]:
    return {f"{unq(rtype)}.{unq(name)}": body for block in blocks(directory, "resource")
            for rtype, named in block.items() for name, body in named.items()}


def stand_in_module(directory: Path) -> str:
    """A module's resources as terraform_data, counted or keyed as the module declares them."""
    out = ['variable "shape" {\n  type = any\n}\n']
    for address, body in resources(directory).items():
        name = stand_in_address(address).split(".", 1)[1]
        meta = ""
        if "count" in body:
            meta = f'  count = var.shape["{address}"]\n'
        elif "for_each" in body:
            meta = f'  for_each = toset(var.shape["{address}"])\n'
        out.append(f'resource "terraform_data" "{name}" {{\n{meta}}}\n')
    return "".join(out) + moved_blocks(directory)


def stand_in_root() -> dict[str, str]:
    files = {}
    calls = {unq(n): body for block in blocks(TERRAFORM, "module") for n, body in block.items()}
    root = ['resource "terraform_data" "random_password__k3s_token" {}\n']
    for name, body in calls.items():
        source = unq(body["source"])
        files[f"{source.removeprefix('./')}/main.tf"] = stand_in_module(TERRAFORM / source)
        if "count" in body:  # the optional private network: not made in this deployment
            root.append(f'module "{name}" {{\n  source = "{source}"\n  count  = 0\n  shape  = {{}}\n}}\n')
            continue
        instances = {key.split('"')[1]: shape for key, shape in CURRENT.items() if key.startswith(f'{name}["')}
        if "for_each" in body:
            assert instances, f"no instances of module {name} in CURRENT"
            shapes = json.dumps(json.dumps(instances))
            root.append(f'module "{name}" {{\n  source   = "{source}"\n  for_each = jsondecode({shapes})\n'
                        "  shape    = each.value\n}\n")
        else:
            shape = json.dumps(json.dumps(CURRENT[name]))
            root.append(f'module "{name}" {{\n  source = "{source}"\n  shape  = jsondecode({shape})\n}}\n')
    files["main.tf"] = "".join(root) + moved_blocks(TERRAFORM)
    return files


def run(binary: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"})
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def write(base: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text, encoding="utf-8")


def test_the_earlier_layout_moves_to_the_current_one_without_rebuilding(tmp_path: Path) -> None:
    try:
        binary = find_tool("terraform")
    except ToolError:
        pytest.fail("terraform is missing: run `make tools`")
    earlier = tmp_path / "earlier"
    write(earlier, {("cluster/" + k if k == "main.tf" else k): v for k, v in EARLIER.items()})
    run(binary, ["init", "-input=false"], earlier / "cluster")
    run(binary, ["apply", "-auto-approve", "-input=false"], earlier / "cluster")

    current = tmp_path / "current"
    write(current, stand_in_root())
    (current / "terraform.tfstate").write_text((earlier / "cluster" / "terraform.tfstate").read_text())
    run(binary, ["init", "-input=false"], current)
    plan = run(binary, ["plan", "-input=false", "-json", "-out=moves.tfplan"], current)
    changes = [json.loads(line) for line in plan.stdout.splitlines() if '"planned_change"' in line]
    actions = {c["change"]["action"] for c in changes}
    assert actions == {"move"}, f"the current layout would rebuild: {actions}"
    summary = next(json.loads(line) for line in plan.stdout.splitlines() if '"change_summary"' in line)
    assert summary["changes"] | {"operation": "plan"} == {"add": 0, "change": 0, "import": 0, "remove": 0,
                                                          "operation": "plan"}
    run(binary, ["apply", "-input=false", "moves.tfplan"], current)
    listed = set(run(binary, ["state", "list"], current).stdout.split())
    moved_to = {stand_in_address(address) for address, _, _ in planned_resources(VARIABLES)}
    # what the fake terraform creates is where the real one moved the earlier deployment to
    assert moved_to <= listed
    assert len(listed) == len(moved_to) + 7  # and the security group's four TCP and three member rules
