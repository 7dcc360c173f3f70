"""A stand-in for the `terraform` executable (installed on PATH as `terraform` by the tests).

It reproduces what chiml relies on from Terraform 1.11, as observed from the real binary on
this machine (`terraform_data` resources need no provider download):

* the ``-json`` UI stream: one JSON object per line with ``@level``/``@message``/``type``
  (version, planned_change, apply_start, apply_complete, change_summary, outputs, diagnostic);
* errors as ``diagnostic`` events with exit code 1;
* flag parsing: an unknown flag such as ``-force`` on destroy (removed in 0.15) fails with
  "flag provided but not defined: -force" on stderr and exit code 1, before doing anything;
* ``apply`` before ``init`` fails; required variables without a value fail; ``output -json``
  with no state prints ``{}``; state lives in ``terraform.tfstate`` of the working directory.

Behaviour is steered by a JSON control file named by FAKE_TF_CONTROL:
``{"fail": {"apply": "message", "destroy": "message", "init": "message"}, "partial_apply": true,
"instances_gone": true, "lease_ended": true}``. ``lease_ended`` is what Blazar leaves at the end
of a lease: the reserved floating IP is deleted, so destroying its association fails (404) until
it is removed from the state with ``state list`` / ``state rm`` (which keep a backup, like the real
ones).
Every invocation is appended to ``calls.jsonl`` beside the control file.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

FLAGS = {
    "version": {"-json"},
    "init": {"-input", "-no-color", "-upgrade"},
    "plan": {"-input", "-json", "-var-file", "-no-color"},
    "apply": {"-auto-approve", "-input", "-json", "-var-file", "-no-color"},
    "destroy": {"-auto-approve", "-input", "-json", "-var-file", "-no-color", "-refresh"},
    "output": {"-json", "-no-color"},
    "state list": {"-state", "-id"},
    "state rm": {"-dry-run", "-backup", "-lock", "-lock-timeout", "-state", "-ignore-remote-version"},
}
PLACEHOLDER = "<from the lease>"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def emit(level: str, message: str, kind: str, **extra: object) -> None:
    event = {"@level": level, "@message": message, "@module": "terraform.ui", "@timestamp": now(), "type": kind}
    event.update(extra)
    print(json.dumps(event), flush=True)


def diagnostic(summary: str, detail: str = "") -> None:
    emit("error", f"Error: {summary}", "diagnostic", diagnostic={"severity": "error", "summary": summary,
                                                                 "detail": detail})


def flag_error(command: str, flag: str) -> int:
    sys.stderr.write(
        "\x1b[31m╷\x1b[0m\x1b[0m\n\x1b[31m│\x1b[0m \x1b[0m\x1b[1m\x1b[31mError: \x1b[0m\x1b[0m\x1b[1mFailed to parse "
        "command-line flags\x1b[0m\n\x1b[31m│\x1b[0m \x1b[0m\n\x1b[31m│\x1b[0m \x1b[0m\x1b[0mflag provided but not "
        f"defined: {flag}\n\x1b[31m╵\x1b[0m\x1b[0m\n\nFor more help on using this command, run:\n"
        f"  terraform {command} -help\n"
    )
    return 1


def declared_variables(cwd: Path) -> dict[str, bool]:
    """variable name -> has a default, read from variables.tf the way a human would."""
    text = (cwd / "variables.tf").read_text(encoding="utf-8") if (cwd / "variables.tf").is_file() else ""
    result = {}
    for match in re.finditer(r'variable "([^"]+)" \{(.*?)\n\}', text, flags=re.S):
        result[match.group(1)] = "default" in match.group(2)
    return result


def declared_outputs(cwd: Path) -> list[str]:
    """Output names of the root configuration, read from its outputs.tf."""
    text = (cwd / "outputs.tf").read_text(encoding="utf-8") if (cwd / "outputs.tf").is_file() else ""
    return re.findall(r'^output "([^"]+)" \{', text, flags=re.M)


class Outputs:
    """The root configuration's outputs, evaluated from the repository's own outputs.tf files.

    A small evaluator of the expressions those files use (module outputs, resource attributes,
    ``concat``, ``for`` over a counted resource, string templates, ``var.`` of a module call) over
    the resources the fake created. Whatever else appears fails loudly, so the fake follows the
    source instead of a copy of it: rename an output or a key there, and the fake's outputs change.
    """

    def __init__(self, cwd: Path, resources: list[dict]) -> None:
        import hcl2

        self.hcl2 = hcl2
        self.cwd = cwd
        self.attrs = {res["addr"]: res["instances"][0]["attributes"] for res in resources}
        main = (cwd / "main.tf").read_text(encoding="utf-8")
        self.modules: dict[str, tuple[Path, str]] = {}
        for match in re.finditer(r'^module "([^"]+)" \{\n(.*?)\n\}', main, flags=re.S | re.M):
            source = re.search(r'source\s*=\s*"([^"]+)"', match.group(2))
            assert source, match.group(1)
            self.modules[match.group(1)] = ((cwd / source.group(1)).resolve(), match.group(2))

    def _outputs_of(self, directory: Path) -> dict[str, object]:
        with (directory / "outputs.tf").open(encoding="utf-8") as handle:
            blocks = self.hcl2.load(handle).get("output", [])
        return {name.strip('"'): body["value"] for block in blocks for name, body in block.items()}

    def all(self) -> dict[str, object]:
        return {name: self.evaluate(expr, "") for name, expr in self._outputs_of(self.cwd).items()}

    def evaluate(self, expr: object, module: str) -> object:
        if isinstance(expr, dict):
            return {k.strip('"'): self.evaluate(v, module) for k, v in expr.items() if not k.startswith("__")}
        if not isinstance(expr, str):
            return expr
        whole = re.fullmatch(r"\$\{(.*)\}", expr, flags=re.S)
        if whole and "${" not in whole.group(1):
            return self.resolve(whole.group(1), module)
        text = expr[1:-1] if expr.startswith('"') and expr.endswith('"') else expr
        return re.sub(r"\$\{([^}]*)\}", lambda m: str(self.resolve(m.group(1), module)), text)

    def resolve(self, ref: str, module: str) -> object:
        ref = ref.strip()
        prefix = f"module.{module}." if module else ""
        if ref.startswith("concat(") and ref.endswith(")"):
            return [item for part in ref[7:-1].split(",") for item in self.resolve(part, module)]
        loop = re.fullmatch(r"\[for (\w+) in ([\w.]+) : \{(.*)\}\]", ref, flags=re.S)
        if loop:
            name, source, body = loop.groups()
            fields = dict(re.findall(r"(\w+)\s*=\s*([\w.\[\]]+)", body))
            instances = sorted((a for a in self.attrs if a.startswith(f"{prefix}{source}[")),
                               key=lambda a: int(a.rsplit("[", 1)[1].rstrip("]")))
            return [{key: (self.attrs[addr][value.split(".", 1)[1]] if value.startswith(f"{name}.")
                           else self.resolve(value, module)) for key, value in fields.items()}
                    for addr in instances]
        parts = ref.split(".")
        if parts[0] == "module" and len(parts) == 3:
            directory = self.modules[parts[1]][0]
            return self.evaluate(self._outputs_of(directory)[parts[2]], parts[1])
        if parts[0] == "var" and len(parts) == 2 and module:
            found = re.search(rf"^\s*{parts[1]}\s*=\s*(true|false)\s*$", self.modules[module][1], flags=re.M)
            if found is None:  # the module's default
                with (self.modules[module][0] / "variables.tf").open(encoding="utf-8") as handle:
                    blocks = self.hcl2.load(handle)["variable"]
                bodies = {n.strip('"'): body for block in blocks for n, body in block.items()}
                return bodies[parts[1]]["default"]
            return found.group(1) == "true"
        indexed = re.fullmatch(r"(\w+)\.(\w+)\.(\w+)(?:\[(\d+)\])?", ref)
        if indexed and f"{prefix}{indexed.group(1)}.{indexed.group(2)}" in self.attrs:
            value = self.attrs[f"{prefix}{indexed.group(1)}.{indexed.group(2)}"][indexed.group(3)]
            return value[int(indexed.group(4))] if indexed.group(4) is not None else value
        raise SystemExit(f"fake terraform cannot evaluate {ref!r} (module {module or 'root'}): teach the fake")


def output_type(value: object) -> object:
    if isinstance(value, dict):
        return ["object", {k: output_type(v) for k, v in value.items()}]
    if isinstance(value, list):
        return ["tuple", [output_type(v) for v in value]]
    return "bool" if isinstance(value, bool) else "string"


def resource(addr: str, rtype: str, attrs: dict) -> dict:
    module = ""
    if addr.startswith("module."):
        module = ".".join(addr.split(".")[:2])
    return {"module": module, "mode": "managed", "type": rtype, "name": addr.split(".")[-1].split("[")[0],
            "addr": addr, "instances": [{"attributes": {"id": str(uuid.uuid4()), **attrs}}]}


def main() -> int:
    args = sys.argv[1:]
    cwd = Path.cwd()
    control_path = os.environ.get("FAKE_TF_CONTROL")
    control = json.loads(Path(control_path).read_text()) if control_path and Path(control_path).is_file() else {}
    if control_path:
        with open(Path(control_path).parent / "calls.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps({"args": args, "cwd": str(cwd)}) + "\n")
    if not args:
        print("Usage: terraform [global options] <subcommand> [args]")
        return 127
    command, rest = args[0], args[1:]
    if command == "state" and rest and f"state {rest[0]}" in FLAGS:
        command, rest = f"state {rest[0]}", rest[1:]
    if command not in FLAGS:
        sys.stderr.write(f'Terraform has no command named "{command}".\n')
        return 1
    options: dict[str, str] = {}
    positional: list[str] = []
    for arg in rest:
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        name, _, value = arg.partition("=")
        if name not in FLAGS[command]:
            if command.startswith("state "):  # state subcommands word their flag errors differently
                sys.stderr.write(f"\x1b[31mError parsing command-line flags: flag provided but not defined: {name}\n")
                return 1
            return flag_error(command, name)
        options[name] = value
    fail = control.get("fail", {})
    state_path = cwd / "terraform.tfstate"
    empty = {"version": 4, "resources": [], "outputs": {}}
    state = json.loads(state_path.read_text()) if state_path.is_file() else empty

    if command == "version":
        print(json.dumps({"terraform_version": "1.11.4", "platform": "linux_amd64", "provider_selections": {},
                          "terraform_outdated": False}, indent=2))
        return 0
    if command == "init":
        if not list(cwd.glob("*.tf")):
            print("Terraform initialized in an empty directory!")
            return 0
        if "init" in fail:
            sys.stderr.write(f"Error: Failed to query available provider packages\n\n{fail['init']}\n")
            return 1
        (cwd / ".terraform" / "providers").mkdir(parents=True, exist_ok=True)
        (cwd / ".terraform.lock.hcl").write_text("# fake lock file\n")
        print("\nInitializing the backend...\nInitializing modules...\nInitializing provider plugins...\n"
              "- Installing terraform-provider-openstack/openstack v3.3.2...\n\n"
              "Terraform has been successfully initialized!")
        return 0
    if command == "output":
        outputs = state.get("outputs") or {}
        print(json.dumps(outputs, indent=2))
        return 0
    if command.startswith("state "):
        if not state_path.is_file():
            sys.stderr.write("\x1b[31mNo state file was found!\n\nState management commands require a state file. "
                             "Run this command\nin a directory where Terraform has been run or use the -state flag\n"
                             "to point the command to a specific state location.\x1b[0m\x1b[0m\n")
            return 1
        if command == "state list":
            for res in state["resources"]:
                print(res["addr"])
            return 0
        addresses = {res["addr"] for res in state["resources"]}
        unknown = [a for a in positional if a not in addresses]
        if unknown or not positional:
            sys.stderr.write("\x1b[31m\x1b[31m╷\x1b[0m\x1b[0m\n\x1b[31m│\x1b[0m \x1b[0m\x1b[1m\x1b[31mError: \x1b[0m"
                             "\x1b[0m\x1b[1mInvalid target address\x1b[0m\n\x1b[31m│\x1b[0m \x1b[0m\n\x1b[31m│\x1b[0m "
                             "\x1b[0m\x1b[0mNo matching objects found. To view the available instances, use "
                             '"terraform\n\x1b[31m│\x1b[0m \x1b[0mstate list". Please modify the address to '
                             "reference a specific instance.\n\x1b[31m╵\x1b[0m\x1b[0m\n")
            return 1
        backup = cwd / f"terraform.tfstate.{int(datetime.now(UTC).timestamp())}.backup"
        backup.write_text(json.dumps(state))
        state["resources"] = [res for res in state["resources"] if res["addr"] not in positional]
        state_path.write_text(json.dumps(state))
        for address in positional:
            print(f"Removed {address}")
        print(f"Successfully removed {len(positional)} resource instance(s).")
        return 0

    emit("info", "Terraform 1.11.4", "version", terraform="1.11.4", ui="1.2")
    if not (cwd / ".terraform").is_dir():
        diagnostic("Module not installed", 'This module is not yet installed. Run "terraform init" to install all '
                   "modules required by this configuration.")
        return 1
    variables: dict = {}
    if "-var-file" in options:
        var_file = Path(options["-var-file"])
        if not var_file.is_absolute():
            var_file = cwd / var_file
        if not var_file.is_file():
            diagnostic("Failed to read variables file", f"Given variables file {var_file} does not exist.")
            return 1
        variables = json.loads(var_file.read_text())
    declared = declared_variables(cwd)
    for name, has_default in declared.items():
        if not has_default and variables.get(name) is None:
            diagnostic("No value for required variable", f'The root module input variable "{name}" is not set.')
            return 1
    for name, value in variables.items():
        if value == PLACEHOLDER:
            diagnostic("Invalid value for variable", f'var.{name} is "{value}"')
            return 1

    if command == "destroy":
        if control.get("instances_gone") and options.get("-refresh") != "false":
            # the port data source looks the server up by device_id: gone with the lease
            diagnostic("Your query returned no results. Please change your search criteria and try again.",
                       "with data.openstack_networking_port_v2.server")
            return 1
        if "destroy" in fail:
            diagnostic("Error deleting openstack_compute_instance_v2", fail["destroy"])
            return 1
        count = len(state["resources"])
        if options.get("-refresh") != "false":
            for res in state["resources"]:
                emit("info", f"{res['addr']}: Refreshing state...", "refresh_start",
                     hook={"resource": {"addr": res["addr"]}})
                emit("info", f"{res['addr']}: Refresh complete", "refresh_complete",
                     hook={"resource": {"addr": res["addr"]}})
        for res in reversed(state["resources"]):
            emit("info", f"{res['addr']}: Plan to delete", "planned_change",
                 change={"resource": {"addr": res["addr"]}, "action": "delete"})
        emit("info", f"Plan: 0 to add, 0 to change, {count} to destroy.", "change_summary",
             changes={"add": 0, "change": 0, "import": 0, "remove": count, "operation": "plan"})
        if state.get("outputs"):
            emit("info", f"Outputs: {len(state['outputs'])}", "outputs",
                 outputs={name: {"sensitive": False, "action": "delete"} for name in state["outputs"]})
        for res in reversed(list(state["resources"])):
            if control.get("lease_ended") and res["type"] == "openstack_networking_floatingip_associate_v2":
                # Blazar deleted the reserved floating IP with the lease; provider 3.3.2's delete
                # (a port_id update) does not treat the 404 as done. What was destroyed is gone.
                emit("error", f"{res['addr']}: Destruction errored after 1s", "apply_errored",
                     hook={"resource": {"addr": res["addr"]}, "action": "delete"})
                attrs = res["instances"][0]["attributes"]
                diagnostic("Error disassociating openstack_networking_floatingip_associate_v2 floating_ip "
                           f"{attrs['id']} with port {attrs.get('port_id', '')}: Resource not found",
                           f"with {res['addr']}")
                state_path.write_text(json.dumps(state))
                return 1
            state["resources"].remove(res)
            emit("info", f"{res['addr']}: Destroying...", "apply_start",
                 hook={"resource": {"addr": res["addr"]}, "action": "delete"})
            emit("info", f"{res['addr']}: Destruction complete after 1s", "apply_complete",
                 hook={"resource": {"addr": res["addr"]}, "action": "delete"})
        state["resources"] = []
        state["outputs"] = {}
        state_path.write_text(json.dumps(state))
        emit("info", f"Destroy complete! Resources: {count} destroyed.", "change_summary",
             changes={"add": 0, "change": 0, "import": 0, "remove": count, "operation": "destroy"})
        return 0

    # plan / apply: the resources the bare-metal/KVM root configurations create
    deployment = variables.get("deployment", "chiml")
    tags = ["chiml", f"chiml-deployment={deployment}"]
    wanted = [("module.security_group.openstack_networking_secgroup_v2.this", "openstack_networking_secgroup_v2",
               {"name": deployment, "tags": tags}),
              ("random_password.k3s_token", "random_password", {}),
              ("module.server.openstack_networking_port_v2.server", "openstack_networking_port_v2",
               {"name": f"{deployment}-server", "all_fixed_ips": ["10.140.81.10"], "tags": tags}),
              ("module.server.openstack_compute_instance_v2.server", "openstack_compute_instance_v2",
               {"name": f"{deployment}-server", "access_ip_v4": "10.140.81.10"}),
              ("module.server.openstack_networking_floatingip_associate_v2.server",
               "openstack_networking_floatingip_associate_v2", {"floating_ip": variables.get("floating_ip_address")})]
    for group, count_var in (("cpu", "cpu_agent_count"), ("gpu", "gpu_agent_count")):
        for i in range(int(variables.get(count_var) or 0)):
            wanted.append((f"module.{group}_agents.openstack_compute_instance_v2.agent[{i}]",
                           "openstack_compute_instance_v2",
                           {"name": f"{deployment}-{group}-{i}",
                            "access_ip_v4": f"10.140.81.{20 + i + (10 if group == 'gpu' else 0)}"}))
    existing = {res["addr"] for res in state["resources"]}
    to_add = [w for w in wanted if w[0] not in existing]
    for addr, _, _ in to_add:
        emit("info", f"{addr}: Plan to create", "planned_change",
             change={"resource": {"addr": addr}, "action": "create"})
    emit("info", f"Plan: {len(to_add)} to add, 0 to change, 0 to destroy.", "change_summary",
         changes={"add": len(to_add), "change": 0, "import": 0, "remove": 0, "operation": "plan"})
    if to_add:  # planned outputs: no values yet, like the real stream
        names = declared_outputs(cwd)
        emit("info", f"Outputs: {len(names)}", "outputs",
             outputs={name: {"sensitive": False, "action": "create"} for name in names})
    if command == "plan":
        return 0
    for index, (addr, rtype, attrs) in enumerate(to_add):
        if "apply" in fail and (not control.get("partial_apply") or index >= 2):
            emit("error", f"{addr}: Creation errored after 3s", "apply_errored",
                 hook={"resource": {"addr": addr}, "action": "create"})
            diagnostic("Error creating OpenStack server", fail["apply"])
            state_path.write_text(json.dumps(state))
            return 1
        emit("info", f"{addr}: Creating...", "apply_start", hook={"resource": {"addr": addr}, "action": "create"})
        state["resources"].append(resource(addr, rtype, attrs))
        emit("info", f"{addr}: Creation complete after 5s", "apply_complete",
             hook={"resource": {"addr": addr}, "action": "create"})
    values = Outputs(cwd, state["resources"]).all()
    state["outputs"] = {name: {"sensitive": False, "type": output_type(value), "value": value}
                        for name, value in values.items()}
    state_path.write_text(json.dumps(state))
    emit("info", f"Apply complete! Resources: {len(to_add)} added, 0 changed, 0 destroyed.", "change_summary",
         changes={"add": len(to_add), "change": 0, "import": 0, "remove": 0, "operation": "apply"})
    emit("info", f"Outputs: {len(state['outputs'])}", "outputs",
         outputs={k: {"sensitive": v["sensitive"], "type": v["type"], "value": v["value"]}
                  for k, v in state["outputs"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
