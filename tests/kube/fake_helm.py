"""A fake `helm` executable that mimics helm 4.1's CLI for the commands chiml's installer runs.

It parses flags the way helm (cobra/pflag) does: per-command flag tables taken from the real
helm 4.1.4 `--help` (a test compares them with the real binary), value flags as `--f v` or
`--f=v`, `-n ns`, unknown flags fail with helm's "Error: unknown flag: --x", the renamed flags
(`--atomic`, `--force`) print helm's deprecation warning and still work, and `helm list` no
longer has `--all`. Output is helm's JSON (release objects, list rows with string revisions,
`null` for empty values) and its error lines ("Error: release: not found", "UPGRADE FAILED: ...").

State lives in the JSON file named by $FAKE_HELM_STATE, with every invocation appended to
"calls" so tests can assert on the exact command lines. Failure injection:

* $FAKE_HELM_FAIL=name[,name...]: those releases fail to become ready (context deadline
  exceeded); with --rollback-on-failure a failed install is uninstalled and a failed upgrade is
  rolled back, as helm does.
* $FAKE_HELM_FAIL_ONCE=name[,name...]: only the first install/upgrade of those releases fails
  that way (a start-up race, such as KServe's controller starting before its webhook
  certificate exists).
* $FAKE_HELM_FAIL_UNINSTALL=name: uninstalling it fails.
* $FAKE_HELM_MISSING_CHART=ref[,ref...]: pulling those chart references (`upgrade`, `show chart`)
  fails like a 404 from the registry.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

VERSION = "v4.1.4"

GLOBAL_VALUE = {
    "--burst-limit", "--color", "--colour", "--content-cache", "--kube-apiserver", "--kube-as-group",
    "--kube-as-user", "--kube-ca-file", "--kube-context", "--kube-tls-server-name", "--kube-token",
    "--kubeconfig", "--namespace", "--qps", "--registry-config", "--repository-cache", "--repository-config",
}
GLOBAL_BOOL = {"--debug", "--help", "--kube-insecure-skip-tls-verify"}
SHORT = {"-n": "--namespace", "-h": "--help"}

# (value flags, bool flags, flags whose value is optional, short flags) per command, from helm 4.1.4 --help
COMMANDS: dict[str, tuple[set[str], set[str], set[str], dict[str, str]]] = {
    "upgrade": (
        {
            "--ca-file", "--cert-file", "--description", "--history-max", "--key-file", "--keyring", "--labels",
            "--output", "--password", "--post-renderer", "--post-renderer-args", "--repo", "--server-side", "--set",
            "--set-file", "--set-json", "--set-literal", "--set-string", "--timeout", "--username", "--values",
            "--version",
        },
        {
            "--cleanup-on-fail", "--create-namespace", "--dependency-update", "--devel", "--disable-openapi-validation",
            "--enable-dns", "--force-conflicts", "--force-replace", "--hide-notes", "--hide-secret",
            "--insecure-skip-tls-verify", "--install", "--no-hooks", "--pass-credentials", "--plain-http",
            "--render-subchart-notes", "--reset-then-reuse-values", "--reset-values", "--reuse-values",
            "--rollback-on-failure", "--skip-crds", "--skip-schema-validation", "--take-ownership", "--verify",
            "--wait-for-jobs",
            # deprecated in helm 4, still accepted with a warning
            "--atomic", "--force",
        },
        {"--dry-run", "--wait"},
        {"-i": "--install", "-l": "--labels", "-o": "--output", "-f": "--values"},
    ),
    "list": (
        {"--filter", "--max", "--offset", "--output", "--selector", "--time-format"},
        {
            "--all-namespaces", "--date", "--deployed", "--failed", "--no-headers", "--pending", "--reverse",
            "--short", "--superseded", "--uninstalled", "--uninstalling",
        },
        set(),
        {"-A": "--all-namespaces", "-d": "--date", "-f": "--filter", "-m": "--max", "-o": "--output",
         "-r": "--reverse", "-l": "--selector", "-q": "--short"},
    ),
    "get values": ({"--output", "--revision"}, {"--all"}, set(), {"-a": "--all", "-o": "--output"}),
    "status": ({"--output", "--revision"}, set(), set(), {"-o": "--output"}),
    "uninstall": (
        {"--cascade", "--description", "--timeout"},
        {"--dry-run", "--ignore-not-found", "--keep-history", "--no-hooks"},
        {"--wait"},
        {},
    ),
    "history": ({"--max", "--output"}, set(), set(), {"-o": "--output"}),
    "show chart": (
        {"--ca-file", "--cert-file", "--key-file", "--keyring", "--password", "--repo", "--username", "--version"},
        {"--devel", "--insecure-skip-tls-verify", "--pass-credentials", "--plain-http", "--verify"},
        set(),
        {},
    ),
    "version": ({"--template"}, {"--short"}, set(), {}),
}
DEPRECATED = {"--atomic": "--rollback-on-failure", "--force": "--force-replace"}


class HelmExit(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def parse(argv: list[str]) -> tuple[str, list[str], dict[str, Any]]:
    """Split argv into (command, positionals, flags) the way cobra does, or raise HelmExit."""
    if argv[:2] in (["get", "values"], ["show", "chart"]):
        command, rest = " ".join(argv[:2]), argv[2:]
    elif argv and argv[0] in COMMANDS:
        command, rest = argv[0], argv[1:]
    else:
        raise HelmExit(f'unknown command "{argv[0] if argv else ""}" for "helm"')
    value_flags, bool_flags, optional_flags, shorts = COMMANDS[command]
    positionals: list[str] = []
    flags: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        arg = rest[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            continue
        name, eq, inline = arg.partition("=")
        name = shorts.get(name, SHORT.get(name, name))
        if name in value_flags or name in GLOBAL_VALUE:
            if eq:
                value = inline
            else:
                if i >= len(rest):
                    raise HelmExit(f"flag needs an argument: {arg}")
                value = rest[i]
                i += 1
            if name in ("--values", "--set", "--set-string", "--set-json"):
                flags.setdefault(name, []).append(value)
            else:
                flags[name] = value
        elif name in optional_flags:
            flags[name] = inline if eq else "watcher" if name == "--wait" else "unset"
        elif name in bool_flags or name in GLOBAL_BOOL:
            if eq and inline not in ("true", "false"):
                parse_error = f'strconv.ParseBool: parsing "{inline}": invalid syntax'
                raise HelmExit(f'invalid argument "{inline}" for "{arg}" flag: {parse_error}')
            flags[name] = (inline != "false") if eq else True
            if name in DEPRECATED:
                print(f"Flag {name} has been deprecated, use {DEPRECATED[name]} instead", file=sys.stderr)
        else:
            if name.startswith("--"):
                raise HelmExit(f"unknown flag: {name}")
            raise HelmExit(f"unknown shorthand flag: {name[1:2]!r} in {arg}")
    return command, positionals, flags


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.doc = json.loads(path.read_text()) if path.exists() else {"releases": {}, "calls": []}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def key(self, namespace: str, name: str) -> str:
        return f"{namespace}/{name}"


def now() -> datetime:
    return datetime.now(UTC)


def release_json(rel: dict[str, Any]) -> dict[str, Any]:
    """helm 4's release object (as `-o json` prints it; empty config is omitted)."""
    out = {
        "name": rel["name"],
        "info": {
            "first_deployed": rel["first_deployed"],
            "last_deployed": rel["updated"],
            "description": rel["description"],
            "status": rel["status"],
            "notes": "",
        },
        "chart": {
            "metadata": {
                "name": rel["chart_name"],
                "version": rel["chart_version"],
                "apiVersion": "v2",
                "appVersion": rel.get("app_version", ""),
            },
            "lock": None,
        },
        "manifest": "",
        "hooks": [],
        "version": rel["revision"],
        "namespace": rel["namespace"],
        "apply_method": "ssa",
    }
    if rel["values"]:
        out["config"] = rel["values"]
    return out


def resolve_chart(ref: str, flags: dict[str, Any]) -> tuple[str, str, str]:
    """(name, version, appVersion) of the chart helm would pull or read."""
    missing = os.environ.get("FAKE_HELM_MISSING_CHART", "").split(",")
    if ref in missing:
        if ref.startswith("oci://"):
            source = f'{ref.removeprefix("oci://")}:{flags.get("--version", "")}'
            raise HelmExit(f'failed to perform "FetchReference" on source: {source}: not found')
        version = flags.get("--version", "")
        raise HelmExit(f'chart "{ref}" version "{version}" not found in {flags.get("--repo")} repository')
    path = Path(ref)
    if path.is_dir():
        meta = yaml.safe_load((path / "Chart.yaml").read_text())
        return str(meta["name"]), str(meta["version"]), str(meta.get("appVersion", ""))
    if ref.startswith("oci://"):
        if "--version" not in flags:
            raise HelmExit(f"{ref}: a version is required in this fake (chiml always pins one)")
        return ref.rsplit("/", 1)[-1], flags["--version"], ""
    if "/" not in ref and "--repo" not in flags:
        raise HelmExit(f"non-absolute URLs should be in form of repo_name/path_to_chart, got: {ref}")
    if "--version" not in flags:
        raise HelmExit(f"{ref}: a version is required in this fake (chiml always pins one)")
    return ref.rsplit("/", 1)[-1], flags["--version"], ""


def read_values(flags: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for source in flags.get("--values", []):
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        loaded = yaml.safe_load(text) or {}
        values.update(loaded)
    return values


def cmd_upgrade(store: Store, pos: list[str], flags: dict[str, Any]) -> None:
    if len(pos) != 2:
        raise HelmExit('"helm upgrade" requires 2 arguments\n\nUsage:  helm upgrade [RELEASE] [CHART] [flags]')
    name, ref = pos
    namespace = flags.get("--namespace", "default")
    key = store.key(namespace, name)
    existing = store.doc["releases"].get(key)
    if existing is None and not flags.get("--install"):
        raise HelmExit(f'UPGRADE FAILED: "{name}" has no deployed releases')
    chart_name, version, app_version = resolve_chart(ref, flags)
    values = read_values(flags)
    rollback = flags.get("--rollback-on-failure") or flags.get("--atomic")
    failing = name in os.environ.get("FAKE_HELM_FAIL", "").split(",")
    if name in os.environ.get("FAKE_HELM_FAIL_ONCE", "").split(","):
        failed_before = store.doc.setdefault("failed_once", [])
        if name not in failed_before:
            failed_before.append(name)
            store.save()
            failing = True
    stamp = now().isoformat()
    if existing is None:
        if failing:
            if rollback:
                raise HelmExit(
                    f"INSTALLATION FAILED: release {name} failed, and has been uninstalled due to "
                    "rollback-on-failure being set: context deadline exceeded"
                )
            store.doc["releases"][key] = {
                "name": name, "namespace": namespace, "chart_name": chart_name, "chart_version": version,
                "app_version": app_version, "revision": 1, "status": "failed", "values": values,
                "first_deployed": stamp, "updated": stamp,
                "description": f'Release "{name}" failed: context deadline exceeded',
            }
            store.save()
            raise HelmExit("INSTALLATION FAILED: context deadline exceeded")
        rel = {
            "name": name, "namespace": namespace, "chart_name": chart_name, "chart_version": version,
            "app_version": app_version, "revision": 1, "status": "deployed", "values": values,
            "first_deployed": stamp, "updated": stamp, "description": "Install complete",
        }
    else:
        if failing:
            if rollback:
                existing["revision"] += 2  # the failed revision plus the rollback revision
                existing["updated"] = stamp
                existing["description"] = f"Rollback to {existing['revision'] - 2}"
                store.save()
                raise HelmExit(
                    f"UPGRADE FAILED: release {name} failed, and has been rolled back due to "
                    "rollback-on-failure being set: context deadline exceeded"
                )
            existing.update(revision=existing["revision"] + 1, status="failed", updated=stamp)
            store.save()
            raise HelmExit("UPGRADE FAILED: context deadline exceeded")
        base = {} if flags.get("--reset-values") or not flags.get("--reuse-values") else existing["values"]
        rel = {
            **existing, "chart_name": chart_name, "chart_version": version, "app_version": app_version,
            "revision": existing["revision"] + 1, "status": "deployed", "values": {**base, **values},
            "updated": stamp, "description": "Upgrade complete",
        }
    store.doc["releases"][key] = rel
    store.save()
    if flags.get("--output") == "json":
        print(json.dumps(release_json(rel)))
    else:
        print(f'Release "{name}" has been upgraded. Happy Helming!\nNAME: {name}\nNAMESPACE: {namespace}')


def cmd_list(store: Store, pos: list[str], flags: dict[str, Any]) -> None:
    wanted = {s for s in ("deployed", "failed", "superseded", "uninstalled", "uninstalling") if flags.get(f"--{s}")}
    if flags.get("--pending"):
        wanted |= {"pending-install", "pending-upgrade", "pending-rollback"}
    if not wanted:  # helm's default: deployed and failed
        wanted = {"deployed", "failed"}
    rows = []
    for rel in store.doc["releases"].values():
        if not flags.get("--all-namespaces") and rel["namespace"] != flags.get("--namespace", "default"):
            continue
        if rel["status"] not in wanted:
            continue
        updated = datetime.fromisoformat(rel["updated"]).strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC")
        rows.append({
            "name": rel["name"], "namespace": rel["namespace"], "revision": str(rel["revision"]),
            "updated": updated, "status": rel["status"],
            "chart": f"{rel['chart_name']}-{rel['chart_version']}", "app_version": rel.get("app_version", ""),
        })
    rows.sort(key=lambda r: r["name"])
    rows = rows[: int(flags.get("--max", 256))]
    if flags.get("--output") == "json":
        print(json.dumps(rows))
    else:
        print("NAME\tNAMESPACE\tREVISION\tUPDATED\tSTATUS\tCHART\tAPP VERSION")
        for r in rows:
            keys = ("name", "namespace", "revision", "updated", "status", "chart", "app_version")
            print("\t".join(r[k] for k in keys))


def _get(store: Store, pos: list[str], flags: dict[str, Any], usage: str) -> dict[str, Any]:
    if len(pos) != 1:
        raise HelmExit(f'"helm {usage}" requires 1 argument')
    rel = store.doc["releases"].get(store.key(flags.get("--namespace", "default"), pos[0]))
    if rel is None:
        raise HelmExit("release: not found")
    return rel


def cmd_get_values(store: Store, pos: list[str], flags: dict[str, Any]) -> None:
    rel = _get(store, pos, flags, "get values")
    if flags.get("--output") == "json":
        print(json.dumps(rel["values"] or None))
    else:
        print("USER-SUPPLIED VALUES:\n" + (yaml.safe_dump(rel["values"]) if rel["values"] else "null"))


def cmd_status(store: Store, pos: list[str], flags: dict[str, Any]) -> None:
    rel = _get(store, pos, flags, "status")
    if flags.get("--output") == "json":
        print(json.dumps(release_json(rel)))
    else:
        print(f"NAME: {rel['name']}\nNAMESPACE: {rel['namespace']}\nSTATUS: {rel['status']}")


def cmd_uninstall(store: Store, pos: list[str], flags: dict[str, Any]) -> None:
    if not pos:
        raise HelmExit('"helm uninstall" requires at least 1 argument')
    for name in pos:
        key = store.key(flags.get("--namespace", "default"), name)
        if key not in store.doc["releases"]:
            if flags.get("--ignore-not-found"):
                continue
            raise HelmExit(f"uninstall: Release not loaded: {name}: release: not found")
        if name in os.environ.get("FAKE_HELM_FAIL_UNINSTALL", "").split(","):
            raise HelmExit(f"1 error occurred:\n\t* timed out waiting for the condition on {name}")
        del store.doc["releases"][key]
        store.save()
        print(f'release "{name}" uninstalled')


def cmd_show_chart(store: Store, pos: list[str], flags: dict[str, Any]) -> None:
    """The chart's Chart.yaml, as helm prints it after pulling the chart (or the registry's 404)."""
    if len(pos) != 1:
        raise HelmExit('"helm show chart" requires 1 argument\n\nUsage:  helm show chart [CHART] [flags]')
    name, version, app_version = resolve_chart(pos[0], flags)
    meta = {"apiVersion": "v2", "name": name, "version": version}
    if app_version:
        meta["appVersion"] = app_version
    print(yaml.safe_dump(meta, sort_keys=False), end="")


def cmd_version(store: Store, pos: list[str], flags: dict[str, Any]) -> None:
    template = flags.get("--template")
    if template is not None:
        print(template.replace("{{ .Version }}", VERSION).replace("{{.Version}}", VERSION), end="")
    elif flags.get("--short"):
        print(f"{VERSION}+g05fa379")
    else:
        print(f'version.BuildInfo{{Version:"{VERSION}", GitCommit:"05fa37973dc9e42b76e1d2883494c87174b6074f", '
              'GitTreeState:"clean", GoVersion:"go1.25.9", KubeClientVersion:"v1.35"}')


HANDLERS = {
    "upgrade": cmd_upgrade,
    "list": cmd_list,
    "get values": cmd_get_values,
    "status": cmd_status,
    "uninstall": cmd_uninstall,
    "show chart": cmd_show_chart,
    "version": cmd_version,
}


def main(argv: list[str]) -> int:
    store = Store(Path(os.environ["FAKE_HELM_STATE"]))
    store.doc["calls"].append(argv)
    store.save()
    try:
        command, positionals, flags = parse(argv)
        if command == "history":
            raise HelmExit("history is not implemented by this fake")
        HANDLERS[command](store, positionals, flags)
    except HelmExit as err:
        print(f"Error: {err.message}", file=sys.stderr)
        return err.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
