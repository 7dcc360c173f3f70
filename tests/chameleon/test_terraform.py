"""Structure of the Terraform under terraform/: parsed with python-hcl2, formatted by terraform."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from chiml.chameleon.lease import LeaseInfo
from chiml.chameleon.tfvars import build_tfvars
from chiml.config import parse_config

TERRAFORM = Path(__file__).resolve().parents[2] / "terraform"
MODULES = sorted(p for p in (TERRAFORM / "modules").iterdir() if p.is_dir())
ROOTS = [TERRAFORM / "cluster"]
# Removed in terraform-provider-openstack 3.0 (see its upgrade guide).
REMOVED_RESOURCES = {
    "openstack_compute_floatingip_associate_v2",
    "openstack_compute_floatingip_v2",
    "openstack_compute_secgroup_v2",
}


def unq(value: Any) -> Any:
    return value[1:-1] if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"' else value


def load(directory: Path) -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            for key, value in hcl2.load(handle).items():
                if not key.startswith("__"):
                    merged.setdefault(key, []).extend(value)
    return merged


def variables(directory: Path) -> dict[str, dict[str, Any]]:
    return {unq(name): body for block in load(directory).get("variable", []) for name, body in block.items()}


@pytest.mark.parametrize("directory", MODULES + ROOTS, ids=lambda p: p.name)
def test_standard_structure(directory: Path) -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
        assert (directory / name).is_file(), f"{directory.name} lacks {name}"


@pytest.mark.parametrize("directory", MODULES + ROOTS, ids=lambda p: p.name)
def test_variables_typed_and_described(directory: Path) -> None:
    declared = variables(directory)
    assert declared, f"{directory.name} declares no variables"
    for name, body in declared.items():
        assert "type" in body, f"{directory.name}: variable {name} has no type"
        assert len(unq(body.get("description", ""))) > 10, f"{directory.name}: variable {name} is not described"
        for validation in body.get("validation", []):
            assert unq(validation["error_message"]).endswith("."), f"{directory.name}: {name} error message"


@pytest.mark.parametrize("directory", MODULES + ROOTS, ids=lambda p: p.name)
def test_outputs_described(directory: Path) -> None:
    outputs = [(unq(n), b) for block in load(directory).get("output", []) for n, b in block.items()]
    assert outputs, f"{directory.name} has no outputs"
    for name, body in outputs:
        assert len(unq(body.get("description", ""))) > 10, f"{directory.name}: output {name} is not described"


@pytest.mark.parametrize("directory", MODULES + ROOTS, ids=lambda p: p.name)
def test_provider_pinned_exactly(directory: Path) -> None:
    (terraform,) = load(directory)["terraform"]
    providers = terraform["required_providers"][0]
    openstack = providers["openstack"]
    assert unq(openstack["source"]) == "terraform-provider-openstack/openstack"
    for name, spec in providers.items():
        if not name.startswith("__"):
            assert re.fullmatch(r"\d+\.\d+\.\d+", unq(spec["version"])), f"{name} is not pinned to one version"
    assert unq(openstack["version"]).startswith("3."), "provider 3.x (no removed resources)"


@pytest.mark.parametrize("directory", MODULES + ROOTS, ids=lambda p: p.name)
def test_no_removed_resources(directory: Path) -> None:
    used = {unq(kind) for block in load(directory).get("resource", []) for kind in block}
    assert not used & REMOVED_RESOURCES


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: p.name)
def test_module_calls_match_module_variables(root: Path) -> None:
    for block in load(root)["module"]:
        for name, body in block.items():
            source = (root / unq(body["source"])).resolve()
            declared = variables(source)
            meta = ("source", "count", "depends_on", "for_each")
            passed = {k for k in body if k not in meta and not k.startswith("__")}
            assert passed <= set(declared), f"module {name} gets undeclared {passed - set(declared)}"
            required = {k for k, v in declared.items() if "default" not in v}
            assert required <= passed, f"module {name} misses required {required - passed}"


def _lease(kvm: bool) -> LeaseInfo:
    groups = {"server": "11111111-1111-4111-8111-111111111111", "gpu_agents": "22222222-2222-4222-8222-222222222222"}
    return LeaseInfo(id="l", name="chiml", status="ACTIVE", end="2030-01-01T00:00:00+00:00", reservations=groups,
                     flavors={k: f"flavor-{k}" for k in groups} if kvm else {}, floating_ip="192.5.87.10")


@pytest.mark.parametrize(
    "chameleon",
    [{}, {"site": "KVM@TACC", "server": {"flavor": "m1.xlarge"},
          "gpu_agents": {"count": 1, "flavor": "g1.h100.pci.1"}}],
    ids=["baremetal", "kvm"],
)
def test_generated_tfvars_match_the_root_variables(chameleon: dict) -> None:
    cfg = parse_config({"chameleon": {"key_name": "k", **chameleon}}).chameleon
    values = build_tfvars(cfg, "198.51.100.7/32", _lease(cfg.is_kvm))
    declared = variables(ROOTS[0])
    assert set(values) == set(declared)
    for name, body in declared.items():
        if "default" not in body:
            assert values[name] is not None, f"required variable {name} left null"
    # exactly one of reservation and reserved flavor per group that has nodes (the modules' precondition)
    for group, prefix in (("server", "server"), ("gpu_agents", "gpu_agent")):
        chosen = [values[f"{prefix}_reservation_id"], values[f"{prefix}_flavor_id"]]
        assert sum(v is not None for v in chosen) == 1, (group, chosen)
    assert values["server_flavor_id" if cfg.is_kvm else "server_reservation_id"] is not None


def test_one_root_for_every_site() -> None:
    """Bare metal and KVM@TACC differ only in what the lease gives: one root configuration."""
    assert sorted(p.name for p in TERRAFORM.iterdir() if (p / "main.tf").is_file()) == ["cluster"]
    region = variables(ROOTS[0])["region"]
    condition = region["validation"][0]["condition"]
    assert all(site in condition for site in ("CHI@UC", "CHI@TACC", "KVM@TACC"))
    for module in ("k3s-server", "k3s-agents"):
        main = (TERRAFORM / "modules" / module / "main.tf").read_text()
        assert "(var.reservation_id == null) != (var.flavor_id == null)" in main, module


@pytest.mark.parametrize("name", ["baremetal", "kvm"])
def test_examples_are_complete(name: str) -> None:
    with (TERRAFORM / "examples" / f"{name}.tfvars").open() as handle:
        example = {k: unq(v) for k, v in hcl2.load(handle).items() if not k.startswith("__")}
    declared = variables(ROOTS[0])
    assert set(example) <= set(declared)
    assert {k for k, v in declared.items() if "default" not in v} <= set(example)


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not on PATH (`make tools`)")
def test_terraform_fmt_check() -> None:
    result = subprocess.run(["terraform", "fmt", "-check", "-recursive", str(TERRAFORM)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"not formatted: {result.stdout}"


def test_generated_tfvars_json_is_what_terraform_reads() -> None:
    cfg = parse_config({"chameleon": {"key_name": "k"}}).chameleon
    values = build_tfvars(cfg, "198.51.100.7/32", _lease(False))
    assert json.loads(json.dumps(values)) == values


def test_prepare_copies_configuration_but_never_hand_run_state(tmp_path: Path) -> None:
    from chiml.chameleon.terraform import Terraform

    source = tmp_path / "src"
    for name in ("baremetal", "modules/k3s-server/templates"):
        (source / name).mkdir(parents=True)
    (source / "baremetal" / "main.tf").write_text("# root\n")
    (source / "baremetal" / "terraform.tfstate").write_text("{}")
    (source / "baremetal" / ".terraform").mkdir()
    (source / "modules" / "k3s-server" / "main.tf").write_text("# module\n")
    (source / "modules" / "k3s-server" / "templates" / "x.tftpl").write_text("x")
    work = Terraform.prepare(source, "baremetal", tmp_path / "work")
    assert (work / "main.tf").is_file() and (work.parent / "modules/k3s-server/templates/x.tftpl").is_file()
    assert not (work / "terraform.tfstate").exists() and not (work / ".terraform").exists()
    # a second prepare keeps the deployment's own state and refreshes the configuration
    (work / "terraform.tfstate").write_text('{"resources": [1]}')
    (source / "baremetal" / "main.tf").write_text("# root v2\n")
    Terraform.prepare(source, "baremetal", tmp_path / "work")
    assert (work / "terraform.tfstate").read_text() == '{"resources": [1]}'
    assert (work / "main.tf").read_text() == "# root v2\n"


def _blocks(directory: Path, kind: str) -> dict[str, Any]:
    """``resource``/``data`` blocks of a directory as {"type.name": body}."""
    found = {}
    for block in load(directory).get(kind, []):
        for rtype, named in block.items():
            for name, body in named.items():
                found[f"{unq(rtype)}.{unq(name)}"] = body
    return found


def test_agents_are_created_in_parallel_with_the_server() -> None:
    """The server's address comes from a port made before the instance, so agents wait for the port only."""
    server = TERRAFORM / "modules" / "k3s-server"
    resources = _blocks(server, "resource")
    instance = resources["openstack_compute_instance_v2.server"]
    assert [n["port"] for n in instance["network"]] == ["${openstack_networking_port_v2.server.id}"]
    assert "security_groups" not in instance, "security groups belong on the port"
    port = resources["openstack_networking_port_v2.server"]
    assert port["security_group_ids"] == "${var.security_group_ids}" and port["tags"] == "${var.tags}"
    assert resources["openstack_networking_floatingip_associate_v2.server"]["port_id"] == (
        "${openstack_networking_port_v2.server.id}")
    assert "openstack_networking_port_v2.server" not in _blocks(server, "data"), "no port lookup by instance"
    outputs = {unq(n): b for block in load(server)["output"] for n, b in block.items()}
    assert outputs["private_ip"]["value"] == "${openstack_networking_port_v2.server.all_fixed_ips[0]}"
    for root in ROOTS:
        modules = {unq(n): b for block in load(root)["module"] for n, b in block.items()}
        for name in ("cpu_agents", "gpu_agents"):
            body = modules[name]
            assert unq(body["server_url"]) == "https://${module.server.private_ip}:6443", (root.name, name)
            assert "depends_on" not in body, f"{root.name}: {name} must not wait for the whole server module"
            referenced = re.findall(r"module\.server\.(\w+)", json.dumps(body))
            assert set(referenced) == {"private_ip"}, (root.name, name, referenced)


def test_chiml_marks_what_it_creates() -> None:
    """Neutron resources carry chiml's tags, instances its deployment in their metadata."""
    for root in ROOTS:
        (local_block,) = [b for b in load(root)["locals"] if "tags" in b]
        assert [unq(tag) for tag in local_block["tags"]] == ["chiml", "chiml-deployment=${var.deployment}"]
        modules = {unq(n): b for block in load(root)["module"] for n, b in block.items()}
        for name in ("security_group", "server", "network"):
            assert modules[name]["tags"] == "${local.tags}", (root.name, name)
        for name in ("server", "cpu_agents", "gpu_agents"):
            assert modules[name]["deployment"] == "${var.deployment}", (root.name, name)
    tagged = {"security-group": ["openstack_networking_secgroup_v2.this"],
              "network": ["openstack_networking_network_v2.this", "openstack_networking_subnet_v2.this",
                          "openstack_networking_router_v2.this"],
              "k3s-server": ["openstack_networking_port_v2.server"]}
    for module, addresses in tagged.items():
        resources = _blocks(TERRAFORM / "modules" / module, "resource")
        for address in addresses:
            assert resources[address]["tags"] == "${var.tags}", address
    for module, address in (("k3s-server", "openstack_compute_instance_v2.server"),
                            ("k3s-agents", "openstack_compute_instance_v2.agent")):
        metadata = _blocks(TERRAFORM / "modules" / module, "resource")[address]["metadata"]
        assert {unq(k): v for k, v in metadata.items()}["chiml-deployment"] == "${var.deployment}", address


def test_registry_mirror_reaches_every_node() -> None:
    """chameleon.registry_mirror -> tfvars -> both roots -> server and every agent group (registries.yaml)."""
    cfg = parse_config({"chameleon": {"key_name": "k", "registry_mirror": "https://mirror.example.org"}}).chameleon
    assert build_tfvars(cfg, "198.51.100.7/32", _lease(False))["registry_mirror"] == "https://mirror.example.org"
    for root in ROOTS:
        modules = {unq(n): b for block in load(root)["module"] for n, b in block.items()}
        for name in ("server", "cpu_agents", "gpu_agents"):
            assert modules[name]["registry_mirror"] == "${var.registry_mirror}", (root.name, name)
    for module in ("k3s-server", "k3s-agents"):
        main = (TERRAFORM / "modules" / module / "main.tf").read_text()
        assert "registry_mirror = var.registry_mirror" in main, module
