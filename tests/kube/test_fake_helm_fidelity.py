"""Keep the fake helm honest: its flag tables are the real helm 4's, and every command line the
installer sends is accepted by the real helm's flag parser (no unknown or deprecated flags)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from chiml.kube.helm import Helm
from chiml.kube.installer import install_platform, uninstall_platform
from chiml.tools import ToolError, find_tool

from .fake_helm import COMMANDS, GLOBAL_BOOL, GLOBAL_VALUE

FLAG_LINE = re.compile(r"^\s+(?:-(\w), )?(--[a-z][a-z0-9-]*)(?: (\S+))?(?:\s{2,}|$)")


def real_helm() -> str:
    try:
        helm = find_tool("helm")
    except ToolError:
        pytest.skip("helm not installed: run `make tools`")
    out = subprocess.run([helm, "version", "--template", "{{.Version}}"], capture_output=True, text=True).stdout
    if not out.startswith("v4."):
        pytest.skip(f"not helm 4: {out}")
    return helm


def real_flags(helm: str, command: str) -> tuple[set[str], set[str], set[str], dict[str, str]]:
    """(value flags, bool flags, optional-value flags, shorthands) from `helm <command> --help`."""
    text = subprocess.run([helm, *command.split(), "--help"], capture_output=True, text=True).stdout
    section = text.split("Flags:", 1)[1].split("Global Flags:", 1)[0]
    values, bools, optional, shorts = set(), set(), set(), {}
    for line in section.splitlines():
        match = FLAG_LINE.match(line)
        if not match or match.group(2) == "--help":
            continue
        short, name, kind = match.groups()
        if short:
            shorts[f"-{short}"] = name
        if kind and "[=" in kind:
            optional.add(name)
        elif kind:
            values.add(name)
        else:
            bools.add(name)
    return values, bools, optional, shorts


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_fake_flag_tables_match_real_helm(command: str):
    helm = real_helm()
    values, bools, optional, shorts = real_flags(helm, command)
    fake_values, fake_bools, fake_optional, fake_shorts = COMMANDS[command]
    deprecated_hidden = {"--atomic", "--force"}  # accepted by helm 4 but no longer in --help
    assert fake_values == values
    assert fake_bools - deprecated_hidden == bools
    assert fake_optional == optional
    assert fake_shorts == shorts


def test_global_flags_match_real_helm():
    helm = real_helm()
    text = subprocess.run([helm, "--help"], capture_output=True, text=True).stdout.split("Flags:", 1)[1]
    values, bools = set(), set()
    for line in text.splitlines():
        match = FLAG_LINE.match(line)
        if match and match.group(2) != "--help":
            (values if match.group(3) else bools).add(match.group(2))
    assert values == GLOBAL_VALUE
    assert bools == GLOBAL_BOOL - {"--help"}


def test_real_helm_accepts_every_command_line_the_installer_sends(loaded, cluster, fake_helm, kube_api, tmp_path):
    helm = real_helm()
    install_platform(loaded, cluster, api=kube_api)
    install_platform(loaded, cluster, api=kube_api)  # unchanged: `get values` for each
    Helm().status("mlflow", "chiml")  # what a failure report runs
    uninstall_platform(loaded, cluster)
    calls = fake_helm.calls
    assert {c[0] for c in calls} >= {"version", "list", "get", "status", "upgrade", "uninstall"}
    kubeconfig = tmp_path / "unreachable-kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:9'}\n"
        "contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n"
    )
    seen = set()
    for call in calls:
        key = (call[0], call[1] if len(call) > 1 else "")
        if key in seen:
            continue
        seen.add(key)
        # past flag parsing, helm fails on the unreachable API server (or, for local charts, succeeds)
        proc = subprocess.run(
            [helm, *call, "--kubeconfig", str(kubeconfig)], input="{}", capture_output=True, text=True, timeout=60
        )
        assert "unknown flag" not in proc.stderr and "unknown shorthand" not in proc.stderr, (call, proc.stderr)
        assert "has been deprecated" not in proc.stderr, (call, proc.stderr)
        assert "invalid argument" not in proc.stderr, (call, proc.stderr)
    assert Path(helm).exists()
