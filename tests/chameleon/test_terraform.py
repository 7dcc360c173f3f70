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
ROOTS = [TERRAFORM]  # the root module is terraform/ itself
EXAMPLES = sorted(p for p in (TERRAFORM / "examples").iterdir() if p.is_dir())
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
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
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
            meta = ("source", "count", "depends_on", "for_each", "providers")
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
    # the object types' attributes, as the root declares them
    server_type = declared["server"]["type"]
    assert set(values["server"]) == set(re.findall(r"(\w+) = optional", server_type))
    agent_type = declared["agents"]["type"]
    assert set(values["agents"]) == {"cpu", "gpu"}
    for group in values["agents"].values():
        assert set(group) == set(re.findall(r"(\w+) = (?:optional|number)", agent_type))
    # exactly one of reservation and reserved flavor per group that has nodes (the root's validations)
    for group in (values["server"], values["agents"]["gpu"]):
        chosen = [group["reservation_id"], group["flavor_id"]]
        assert sum(v is not None for v in chosen) == 1, chosen
    assert values["server"]["flavor_id" if cfg.is_kvm else "reservation_id"] is not None
    assert values["agents"]["cpu"] == {"count": 0, "reservation_id": None, "flavor_id": None}


def test_one_root_for_every_site() -> None:
    """Bare metal and KVM@TACC differ only in what the lease gives: one root module, terraform/."""
    roots = sorted(str(p.parent.relative_to(TERRAFORM)) for p in TERRAFORM.rglob("main.tf")
                   if p.parent.parent.name not in ("modules", "examples"))
    assert roots == ["."]
    region = variables(ROOTS[0])["region"]
    condition = region["validation"][0]["condition"]
    assert all(site in condition for site in ("CHI@UC", "CHI@TACC", "KVM@TACC"))
    main = (TERRAFORM / "modules" / "k3s-node" / "main.tf").read_text()
    assert "(var.reservation_id == null) != (var.flavor_id == null)" in main


def _calls(directory: Path) -> dict[str, dict[str, Any]]:
    return {unq(n): b for block in load(directory).get("module", []) for n, b in block.items()}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_call_the_root_with_what_it_needs(example: Path) -> None:
    calls = _calls(example)
    assert calls, f"{example.name} calls no module"
    declared = variables(ROOTS[0])
    required = {k for k, v in declared.items() if "default" not in v}
    for name, body in calls.items():
        assert (example / unq(body["source"])).resolve() == TERRAFORM, f"{example.name}: {name} is not the root"
        passed = {k for k in body if not k.startswith("__") and k != "source"}
        assert passed <= set(declared), f"{example.name}: unknown {passed - set(declared)}"
        assert required <= passed, f"{example.name}: misses {required - passed}"
        assert set(body["agents"]) <= {"cpu", "gpu"}
    assert (example.parent / "README.md").read_text().count(f"`{example.name}`") == 1


def _readme_tables(readme: Path) -> tuple[set[str], set[str]]:
    """Names in the README's Inputs and Outputs tables."""
    text = readme.read_text(encoding="utf-8")
    inputs = text.split("## Inputs", 1)[1].split("\n## ", 1)[0]
    outputs = text.split("## Outputs", 1)[1].split("\n## ", 1)[0]
    return (set(re.findall(r"^\| `(\w+)` \|", inputs, flags=re.M)),
            set(re.findall(r"^\| `(\w+)` \|", outputs, flags=re.M)))


@pytest.mark.parametrize("directory", MODULES + ROOTS, ids=lambda p: p.name)
def test_readme_lists_every_variable_and_output(directory: Path) -> None:
    """The README tables are written by hand (terraform-docs is not available offline): they must
    name every variable and output of the module, and nothing it does not have."""
    inputs, outputs = _readme_tables(directory / "README.md")
    declared_outputs = {unq(n) for block in load(directory).get("output", []) for n in block}
    assert inputs == set(variables(directory)), directory.name
    assert outputs == declared_outputs, directory.name
    text = (directory / "README.md").read_text(encoding="utf-8")
    for name, body in variables(directory).items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
        assert row.endswith("| yes |" if "default" not in body else "| no |"), f"{directory.name}: {name} required?"
        assert unq(body["description"]) in row, f"{directory.name}: {name}'s description differs"


def test_fake_terraform_creates_only_what_the_configuration_declares() -> None:
    """Every address the fake creates is a resource of a module call the root makes."""
    from tests.chameleon.fake_terraform import planned_resources

    calls = _calls(TERRAFORM)
    plan = planned_resources({"deployment": "d", "agents": {"cpu": {"count": 1}, "gpu": {"count": 2}}})
    for address, rtype, _ in plan:
        match = re.fullmatch(r'(?:module\.(\w+)(?:\["(\w+)"\])?\.)?(\w+)\.(\w+)(?:\[(\d+)\])?', address)
        assert match, address
        call, key, kind, name, index = match.groups()
        directory = TERRAFORM if call is None else (TERRAFORM / unq(calls[call]["source"])).resolve()
        body = _blocks(directory, "resource").get(f"{kind}.{name}")
        assert kind == rtype and body is not None, f"{address}: no such resource"
        assert (index is not None) == ("count" in body), f"{address}: count"
        if call is not None:
            assert (key is not None) == ("for_each" in calls[call]), f"{address}: module for_each"


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
    (source / "modules" / "k3s-node" / "templates").mkdir(parents=True)
    (source / "examples" / "x").mkdir(parents=True)
    (source / "main.tf").write_text("# root\n")
    (source / "terraform.tfstate").write_text("{}")
    (source / ".terraform").mkdir()
    (source / "examples" / "x" / "main.tf").write_text("# example\n")
    (source / "modules" / "k3s-node" / "main.tf").write_text("# module\n")
    (source / "modules" / "k3s-node" / "templates" / "x.tftpl").write_text("x")
    work = Terraform.prepare(source, tmp_path / "work" / "cluster")
    assert (work / "main.tf").is_file() and (work / "modules/k3s-node/templates/x.tftpl").is_file()
    assert not (work / "terraform.tfstate").exists() and not (work / ".terraform").exists()
    assert not (work / "examples").exists()
    # a second prepare keeps the deployment's own state and refreshes the configuration
    (work / "terraform.tfstate").write_text('{"resources": [1]}')
    (source / "main.tf").write_text("# root v2\n")
    Terraform.prepare(source, work)
    assert (work / "terraform.tfstate").read_text() == '{"resources": [1]}'
    assert (work / "main.tf").read_text() == "# root v2\n"


def test_prepare_moves_a_working_directory_of_the_earlier_layout(tmp_path: Path) -> None:
    """Earlier, the modules were copied beside the root's copy (base/modules, base/baremetal/)."""
    from chiml.chameleon.terraform import Terraform

    base = tmp_path / "terraform"
    for rel in ("baremetal/main.tf", "baremetal/terraform.tfstate", "modules/k3s-server/main.tf",
                "modules/k3s-agents/main.tf", "baremetal/.terraform/modules/modules.json"):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text("old")
    work = Terraform.prepare(TERRAFORM, base / "baremetal")
    assert (work / "terraform.tfstate").read_text() == "old" and (work / ".terraform/modules/modules.json").exists()
    assert not (base / "modules").exists(), "the old modules beside the root are gone"
    assert sorted(p.name for p in (work / "modules").iterdir()) == sorted(p.name for p in MODULES)
    assert (work / "main.tf").read_text() == (TERRAFORM / "main.tf").read_text()


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
    node = TERRAFORM / "modules" / "k3s-node"
    resources = _blocks(node, "resource")
    instance = resources["openstack_compute_instance_v2.this"]
    (network,) = instance["network"]
    assert network["port"] == "${local.is_server ? openstack_networking_port_v2.server[0].id : null}"
    assert instance["security_groups"] == "${local.is_server ? null : [var.cluster.security_group.name]}", (
        "the server's security groups belong on its port")
    port = resources["openstack_networking_port_v2.server"]
    assert port["count"] == "${local.is_server ? 1 : 0}"
    assert port["security_group_ids"] == ["${var.cluster.security_group.id}"] and port["tags"] == "${var.cluster.tags}"
    assert resources["openstack_networking_floatingip_associate_v2.server"]["port_id"] == (
        "${openstack_networking_port_v2.server[0].id}")
    assert "openstack_networking_port_v2.server" not in _blocks(node, "data"), "no port lookup by instance"
    outputs = {unq(n): b for block in load(node)["output"] for n, b in block.items()}
    assert outputs["private_ip"]["value"] == "${one(openstack_networking_port_v2.server[*].all_fixed_ips[0])}"
    calls = _calls(TERRAFORM)
    assert unq(calls["server"]["role"]) == "server" and unq(calls["agents"]["role"]) == "agent"
    body = calls["agents"]
    assert unq(body["server_url"]) == "https://${module.server.private_ip}:6443"
    assert "depends_on" not in body, "agents must not wait for the whole server module"
    referenced = re.findall(r"module\.server\.(\w+)", json.dumps(body))
    assert set(referenced) == {"private_ip"}, referenced


def _cluster_local() -> dict[str, Any]:
    (block,) = [b for b in load(TERRAFORM)["locals"] if "cluster" in b]
    return block["cluster"]


def test_chiml_marks_what_it_creates() -> None:
    """Neutron resources carry chiml's tags, instances its deployment in their metadata."""
    (local_block,) = [b for b in load(TERRAFORM)["locals"] if "tags" in b]
    assert [unq(tag) for tag in local_block["tags"]] == ["chiml", "chiml-deployment=${var.deployment}"]
    calls = _calls(TERRAFORM)
    for name in ("security_group", "network"):
        assert calls[name]["tags"] == "${local.tags}", name
    cluster = _cluster_local()
    assert cluster["tags"] == "${local.tags}" and cluster["deployment"] == "${var.deployment}"
    for name in ("server", "agents"):
        assert calls[name]["cluster"] == "${local.cluster}", name
    tagged = {"security-group": ["openstack_networking_secgroup_v2.this"],
              "network": ["openstack_networking_network_v2.this", "openstack_networking_subnet_v2.this",
                          "openstack_networking_router_v2.this"]}
    for module, addresses in tagged.items():
        resources = _blocks(TERRAFORM / "modules" / module, "resource")
        for address in addresses:
            assert resources[address]["tags"] == "${var.tags}", address
    node = _blocks(TERRAFORM / "modules" / "k3s-node", "resource")
    assert node["openstack_networking_port_v2.server"]["tags"] == "${var.cluster.tags}"
    metadata = node["openstack_compute_instance_v2.this"]["metadata"]
    assert {unq(k): v for k, v in metadata.items()}["chiml-deployment"] == "${var.cluster.deployment}"


def test_registry_mirror_reaches_every_node() -> None:
    """chameleon.registry_mirror -> tfvars -> the root -> every node's cloud-init (registries.yaml)."""
    cfg = parse_config({"chameleon": {"key_name": "k", "registry_mirror": "https://mirror.example.org"}}).chameleon
    assert build_tfvars(cfg, "198.51.100.7/32", _lease(False))["registry_mirror"] == "https://mirror.example.org"
    assert _cluster_local()["registry_mirror"] == "${var.registry_mirror}"
    calls = _calls(TERRAFORM)
    assert all(calls[name]["cluster"] == "${local.cluster}" for name in ("server", "agents"))
    main = (TERRAFORM / "modules" / "k3s-node" / "main.tf").read_text()
    assert "registry_mirror = var.cluster.registry_mirror" in main
