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
from collections.abc import Callable
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


class Expr:
    """A small evaluator of the HCL expressions the repository's outputs and module calls use.

    Enough of HCL for terraform/ to be read from its source instead of copied into the fake:
    references (``var.``, ``local.``, ``each.``, ``module.``, resources) with attribute, index and
    ``[*]`` traversals, the functions ``one``/``flatten``/``concat``/``values``/``keys``/``compact``,
    ``[for x in xs : ...]``, object literals, ``a ? b : c``, ``==``/``!=`` and string templates.
    Whatever else appears fails loudly: teach the fake rather than copy the value into it.
    """

    TOKEN = re.compile(r'\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>==|!=|[\[\]{}().,:?=*])'
                       r"|(?P<name>[A-Za-z_][\w-]*))")

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            match = self.TOKEN.match(text, pos)
            if not match or match.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise SystemExit(f"fake terraform cannot read {text!r} at {text[pos:]!r}: teach the fake")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.pos = 0

    def peek(self, value: str | None = None) -> bool:
        return self.pos < len(self.tokens) and (value is None or self.tokens[self.pos][1] == value)

    def take(self, value: str | None = None) -> str:
        if value is not None and not self.peek(value):
            raise SystemExit(f"fake terraform expected {value!r} in {self.tokens}")
        self.pos += 1
        return self.tokens[self.pos - 1][1]

    # grammar: ternary := compare ['?' expr ':' expr]; compare := postfix [('=='|'!=') postfix]
    def parse(self) -> Callable[[Scope], object]:
        node = self.compare()
        if self.peek("?"):
            self.take("?")
            yes = self.parse()
            self.take(":")
            no = self.parse()
            cond = node
            return lambda s: yes(s) if cond(s) else no(s)
        return node

    def compare(self) -> Callable[[Scope], object]:
        left = self.postfix()
        if self.peek("==") or self.peek("!="):
            op = self.take()
            right = self.postfix()
            return (lambda s: left(s) == right(s)) if op == "==" else (lambda s: left(s) != right(s))
        return left

    def postfix(self) -> Callable[[Scope], object]:
        node = self.primary()
        steps: list[tuple[str, object]] = []
        while self.peek(".") or self.peek("["):
            if self.take() == ".":
                steps.append(("attr", self.take()))
            elif self.peek("*"):
                self.take("*")
                self.take("]")
                steps.append(("splat", None))
            else:
                index = self.parse()
                self.take("]")
                steps.append(("index", index))
        return lambda s: traverse(node(s), steps, s) if steps else node(s)

    def primary(self) -> Callable[[Scope], object]:
        kind, value = self.tokens[self.pos]
        if kind == "num":
            self.take()
            return lambda s: int(value) if value.isdigit() else float(value)
        if kind == "str":
            self.take()
            return lambda s: s.template(value[1:-1])
        if value == "(":
            self.take("(")
            inner = self.parse()
            self.take(")")
            return inner
        if value == "[":
            self.take("[")
            if self.peek("for"):
                return self.for_expr()
            items = []
            while not self.peek("]"):
                items.append(self.parse())
                if self.peek(","):
                    self.take(",")
            self.take("]")
            return lambda s: [item(s) for item in items]
        if value == "{":
            self.take("{")
            fields = []
            while not self.peek("}"):
                key = self.take().strip('"')
                self.take("=")
                fields.append((key, self.parse()))
                if self.peek(","):
                    self.take(",")
            self.take("}")
            return lambda s: {key: field(s) for key, field in fields}
        name = self.take()
        if name in ("true", "false", "null"):
            return lambda s: {"true": True, "false": False, "null": None}[name]
        if self.peek("("):
            self.take("(")
            args = []
            while not self.peek(")"):
                args.append(self.parse())
                if self.peek(","):
                    self.take(",")
            self.take(")")
            function = FUNCTIONS.get(name)
            if function is None:
                raise SystemExit(f"fake terraform has no function {name}(): teach the fake")
            return lambda s: function(*[arg(s) for arg in args])
        return lambda s: s.lookup(name)

    def for_expr(self) -> Callable[[Scope], object]:
        self.take("for")
        var = self.take()
        self.take("in")
        source = self.parse()
        self.take(":")
        body = self.parse()
        self.take("]")

        def run(s: Scope) -> list[object]:
            items = source(s)
            items = list(items.values()) if isinstance(items, dict) else list(items)  # type: ignore[union-attr]
            return [body(s.bind(var, item)) for item in items]
        return run


def traverse(value: object, steps: list[tuple[str, object]], scope: Scope) -> object:
    for i, (kind, arg) in enumerate(steps):
        if kind == "splat":
            items = [] if value is None else value if isinstance(value, list) else [value]
            return [traverse(item, steps[i + 1:], scope) for item in items]
        if kind == "attr":
            value = value[arg] if isinstance(value, dict) else getattr(value, str(arg))  # type: ignore[index]
        else:
            value = value[arg(scope)]  # type: ignore[index, operator]
    return value


def _one(items: list[object]) -> object:
    if len(items) > 1:
        raise SystemExit("one(): more than one element")
    return items[0] if items else None


FUNCTIONS: dict[str, Callable[..., object]] = {
    "one": _one,
    "flatten": lambda items: [x for item in items for x in (item if isinstance(item, list) else [item])],
    "concat": lambda *lists: [x for lst in lists for x in lst],
    "values": lambda mapping: list(mapping.values()),
    "keys": lambda mapping: list(mapping.keys()),
    "compact": lambda items: [x for x in items if x not in (None, "")],
}


def hcl_expression(value: object) -> str | None:
    """The expression text of a python-hcl2 value ('${...}' whole), or None for a literal."""
    if isinstance(value, str):
        whole = re.fullmatch(r"\$\{(.*)\}", value, flags=re.S)
        if whole and "${" not in whole.group(1):
            return whole.group(1)
    return None


def unquote(value: object) -> object:
    return value[1:-1] if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"' else value


class Scope:
    """Names an expression can see: the module's variables, locals, ``each``, its module calls
    and its resources (from the fake's state), plus loop variables."""

    def __init__(self, config: Config, module_path: str, variables: dict[str, Callable[[], object]],
                 each: tuple[str, object] | None = None, bound: dict[str, object] | None = None) -> None:
        self.config = config
        self.module_path = module_path  # "" for the root, else e.g. 'module.agents["cpu"]'
        self.variables = variables
        self.each = each
        self.bound = bound or {}

    def bind(self, name: str, value: object) -> Scope:
        return Scope(self.config, self.module_path, self.variables, self.each, {**self.bound, name: value})

    def value(self, raw: object) -> object:
        if isinstance(raw, dict):
            return {str(unquote(k)): self.value(v) for k, v in raw.items() if not str(k).startswith("__")}
        if isinstance(raw, list):
            return [self.value(v) for v in raw]
        expr = hcl_expression(raw)
        if expr is not None:
            return Expr(expr).parse()(self)
        raw = unquote(raw)
        return self.template(raw) if isinstance(raw, str) else raw

    def template(self, text: str) -> str:
        return re.sub(r"\$\{([^}]*)\}", lambda m: str(Expr(m.group(1)).parse()(self)), text)

    def lookup(self, name: str) -> object:
        if name in self.bound:
            return self.bound[name]
        if name == "var":
            return Lazy(self.variables)
        if name == "local":
            found = self.config.locals(self.module_path)
            return Lazy({key: (lambda raw=raw: self.value(raw)) for key, raw in found.items()})
        if name == "each" and self.each is not None:
            return {"key": self.each[0], "value": self.each[1]}
        if name == "module":
            return Lazy({call: (lambda call=call: self.config.module_value(self, call))
                         for call in self.config.calls(self.module_path)})
        return Lazy({rname: (lambda rname=rname: self.config.resource_value(self.module_path, name, rname))
                     for rname in self.config.resource_names(self.module_path, name)})


class Lazy(dict):  # type: ignore[type-arg]
    """A mapping whose values are computed when first read."""

    def __getitem__(self, key: object) -> object:
        thunk = super().__getitem__(key)
        return thunk()


class Config:
    """The root module in the working directory and the modules it calls, read with python-hcl2,
    over the resources in the fake's state."""

    def __init__(self, cwd: Path, resources: list[dict], variables: dict[str, object]) -> None:
        import hcl2

        self.hcl2 = hcl2
        self.cwd = cwd
        self.attrs = {res["addr"]: res["instances"][0]["attributes"] for res in resources}
        self.root_variables = variables
        self._dirs: dict[str, Path] = {"": cwd}

    def blocks(self, directory: Path) -> dict[str, list]:
        merged: dict[str, list] = {}
        for path in sorted(directory.glob("*.tf")):
            with path.open(encoding="utf-8") as handle:
                for key, value in self.hcl2.load(handle).items():
                    if not key.startswith("__"):
                        merged.setdefault(key, []).extend(value)
        return merged

    def directory(self, module_path: str) -> Path:
        return self._dirs[module_path]

    def calls(self, module_path: str) -> dict[str, dict]:
        return {str(unquote(n)): body for block in self.blocks(self.directory(module_path)).get("module", [])
                for n, body in block.items()}

    def locals(self, module_path: str) -> dict[str, object]:
        found: dict[str, object] = {}
        for block in self.blocks(self.directory(module_path)).get("locals", []):
            found.update({k: v for k, v in block.items() if not k.startswith("__")})
        return found

    def declared(self, module_path: str) -> dict[str, dict]:
        return {str(unquote(n)): body for block in self.blocks(self.directory(module_path)).get("variable", [])
                for n, body in block.items()}

    def outputs(self, module_path: str) -> dict[str, object]:
        return {str(unquote(n)): body["value"] for block in self.blocks(self.directory(module_path)).get("output", [])
                for n, body in block.items()}

    def root_scope(self) -> Scope:
        declared = self.declared("")
        variables = {name: (lambda name=name: self.root_variables.get(name, declared[name].get("default")))
                     for name in declared}
        return Scope(self, "", variables)

    def module_value(self, caller: Scope, call: str) -> object:
        body = self.calls(caller.module_path)[call]
        prefix = f"{caller.module_path}." if caller.module_path else ""
        directory = (self.directory(caller.module_path) / str(unquote(body["source"]))).resolve()
        if "for_each" in body:
            instances = caller.value(body["for_each"])
            assert isinstance(instances, dict), f"module {call}: for_each over a map only"
            return {key: self._instance(caller, f'{prefix}module.{call}["{key}"]', directory, body, (key, each))
                    for key, each in instances.items()}
        return self._instance(caller, f"{prefix}module.{call}", directory, body, None)

    def _instance(self, caller: Scope, path: str, directory: Path, body: dict,
                  each: tuple[str, object] | None) -> dict[str, object]:
        self._dirs[path] = directory
        outer = Scope(self, caller.module_path, caller.variables, each, caller.bound)
        declared = self.declared(path)
        variables = {name: (lambda name=name: outer.value(body[name]) if name in body
                            else self.declared(path)[name].get("default")) for name in declared}
        inner = Scope(self, path, variables)
        return {name: inner.value(raw) for name, raw in self.outputs(path).items()}

    def resource_names(self, module_path: str, rtype: str) -> list[str]:
        return [str(unquote(n)) for block in self.blocks(self.directory(module_path)).get("resource", [])
                for kind, named in block.items() if unquote(kind) == rtype for n in named]

    def resource_value(self, module_path: str, rtype: str, name: str) -> object:
        base = f"{module_path}.{rtype}.{name}" if module_path else f"{rtype}.{name}"
        if base in self.attrs:
            return self.attrs[base]
        counted = sorted((a for a in self.attrs if a.startswith(f"{base}[")),
                         key=lambda a: int(a.rsplit("[", 1)[1].rstrip("]")))
        return [self.attrs[a] for a in counted]

    def all_outputs(self) -> dict[str, object]:
        root = self.root_scope()
        return {name: root.value(raw) for name, raw in self.outputs("").items()}

    def moves(self, module_path: str = "") -> list[tuple[str, str]]:
        """The moved blocks of a module as (from, to) address texts."""
        return [(hcl_expression(b["from"]) or str(b["from"]), hcl_expression(b["to"]) or str(b["to"]))
                for b in self.blocks(self.directory(module_path)).get("moved", [])]


def apply_moves(config: Config, addresses: list[str]) -> dict[str, str]:
    """old address -> new address for what the configuration's moved blocks move, as Terraform
    does: the root's moves first, then those of the module an address is in (one level deep)."""
    renamed: dict[str, str] = {}
    for address in addresses:
        new = address
        for old, target in config.moves(""):
            if new == old or new.startswith(old + "."):
                new = target + new[len(old):]
        match = re.fullmatch(r'(module\.([\w-]+)(?:\["[^"]+"\])?)\.([\w-]+\.[\w-]+)(\[\d+\])?', new)
        body = config.calls("").get(match.group(2)) if match else None
        if match and body:
            path, resource, index = match.group(1), match.group(3), match.group(4) or ""
            config._dirs[path] = (config.cwd / str(unquote(body["source"]))).resolve()
            for old, target in config.moves(path):
                if old != resource or ("[" in target and index):  # an instance move takes the unindexed object only
                    continue
                new = f"{path}.{target}" if "[" in target else f"{path}.{target}{index}"
                break
        if new != address:
            renamed[address] = new
    return renamed


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


def planned_resources(variables: dict) -> list[tuple[str, str, dict]]:
    """(address, type, attributes) of what the root module creates for these variables (a test
    checks every address against the resources and module calls declared in terraform/)."""
    deployment = variables.get("deployment", "chiml")
    tags = ["chiml", f"chiml-deployment={deployment}"]
    wanted = [("module.security_group.openstack_networking_secgroup_v2.this", "openstack_networking_secgroup_v2",
               {"name": deployment, "tags": tags}),
              ("random_password.k3s_token", "random_password", {}),
              ("module.server.openstack_networking_port_v2.server[0]", "openstack_networking_port_v2",
               {"name": f"{deployment}-server", "all_fixed_ips": ["10.140.81.10"], "tags": tags}),
              ("module.server.openstack_compute_instance_v2.this[0]", "openstack_compute_instance_v2",
               {"name": f"{deployment}-server", "access_ip_v4": "10.140.81.10"}),
              ("module.server.openstack_networking_floatingip_associate_v2.server[0]",
               "openstack_networking_floatingip_associate_v2", {"floating_ip": variables.get("floating_ip_address")})]
    for offset, (kind, group) in enumerate(sorted((variables.get("agents") or {}).items())):
        for i in range(int(group.get("count") or 0)):
            wanted.append((f'module.agents["{kind}"].openstack_compute_instance_v2.this[{i}]',
                           "openstack_compute_instance_v2",
                           {"name": f"{deployment}-{kind}-{i}", "access_ip_v4": f"10.140.81.{20 + 10 * offset + i}"}))
    return wanted


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
        if PLACEHOLDER in json.dumps(value):
            diagnostic("Invalid value for variable", f"var.{name} is {json.dumps(value)}")
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

    # plan / apply: first what the configuration's moved blocks move, as the real plan shows it
    config = Config(cwd, state["resources"], variables)
    for old, new in apply_moves(config, [res["addr"] for res in state["resources"]]).items():
        res = next(r for r in state["resources"] if r["addr"] == old)
        res["addr"] = new
        res["module"] = new.split(".openstack_")[0] if new.startswith("module.") else ""
        emit("info", f"{new}: Plan to move", "planned_change",
             change={"resource": {"addr": new}, "previous_resource": {"addr": old}, "action": "move"})
    wanted = planned_resources(variables)
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
    values = Config(cwd, state["resources"], variables).all_outputs()
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
