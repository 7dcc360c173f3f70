"""cloud-init of the k3s nodes, rendered by Terraform itself and validated.

The templates are rendered with `terraform console` (templatefile() needs no provider, so no
init or network), with the same variables the modules pass (checked against main.tf), then
parsed as YAML, validated with `cloud-init schema` when cloud-init is installed, and their
shell scripts syntax-checked with `sh -n`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

MODULES = Path(__file__).resolve().parents[2] / "terraform" / "modules"
pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not on PATH (`make tools`)")

FIREWALL = 'templatefile("{m}/templates/firewall.sh.tftpl", {{ cluster_cidr = "10.140.80.0/22", admin_cidr = "198.51.100.7/32", admin_ports = {ports} }})'  # noqa: E501
SERVER = (
    'jsonencode(templatefile("{m}/templates/server.cloud-init.yaml.tftpl", {{ '
    'k3s_config = yamlencode({{ "write-kubeconfig-mode" = "0600", "tls-san" = ["192.5.87.10"], token = "t0k3n", '
    '"node-label" = ["chiml.io/role=server"] }}), k3s_version = "v1.33.2+k3s1", registry_mirror = {mirror}, '
    "firewall_script = {firewall} }}))"
)
AGENT = (
    'jsonencode(templatefile("{m}/templates/agent.cloud-init.yaml.tftpl", {{ '
    'k3s_config = yamlencode({{ server = "https://10.140.81.10:6443", token = "t0k3n", '
    '"node-label" = ["chiml.io/gpu={gpu}"] }}), k3s_version = "v1.33.2+k3s1", registry_mirror = null, gpu = {gpu}, '
    "firewall_script = {firewall}, "
    'nvidia_toolkit_script = templatefile("{m}/templates/nvidia-toolkit.sh.tftpl", {{ version = "1.17.8-1" }}) }}))'
)


def _render_all() -> dict[str, str]:
    server_dir, agent_dir = MODULES / "k3s-server", MODULES / "k3s-agents"
    exprs = {
        "server": SERVER.format(m=server_dir, mirror="null",
                                firewall=FIREWALL.format(m=server_dir, ports="[22, 6443]")),
        "server_mirror": SERVER.format(m=server_dir, mirror='"https://mirror.example.org"',
                                       firewall=FIREWALL.format(m=server_dir, ports="[22, 6443]")),
        "cpu_agent": AGENT.format(m=agent_dir, gpu="false", firewall=FIREWALL.format(m=agent_dir, ports="[22]")),
        "gpu_agent": AGENT.format(m=agent_dir, gpu="true", firewall=FIREWALL.format(m=agent_dir, ports="[22]")),
    }
    rendered = {}
    for name, expr in exprs.items():
        # one console per expression: fed several lines on stdin, it prints only the last value
        result = subprocess.run(["terraform", "console"], input=expr + "\n", capture_output=True, text=True,
                                timeout=120, cwd=MODULES)
        assert result.returncode == 0, result.stderr
        lines = [line for line in result.stdout.splitlines() if line.startswith('"')]
        assert len(lines) == 1, result.stdout + result.stderr
        rendered[name] = json.loads(json.loads(lines[0]))
    return rendered


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return _render_all()


def _doc(text: str) -> dict[str, Any]:
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def _file(doc: dict[str, Any], path: str) -> str | None:
    return next((f["content"] for f in doc["write_files"] if f["path"] == path), None)


def test_module_passes_the_variables_the_templates_use() -> None:
    """The variables rendered here are exactly those main.tf hands each template."""
    for module, template, keys in (
        ("k3s-server", "server.cloud-init", {"k3s_config", "k3s_version", "registry_mirror", "firewall_script"}),
        ("k3s-agents", "agent.cloud-init", {"k3s_config", "k3s_version", "registry_mirror", "gpu",
                                            "firewall_script", "nvidia_toolkit_script"}),
    ):
        main = (MODULES / module / "main.tf").read_text()
        call = main[main.index(template):]
        body = call[: call.index("\n  })")]
        top_level = set(re.findall(r"^    (\w+)\s*=", body, flags=re.M))
        assert top_level == keys, module


def test_server(rendered: dict[str, str]) -> None:
    doc = _doc(rendered["server"])
    config = yaml.safe_load(_file(doc, "/etc/rancher/k3s/config.yaml") or "")
    assert config["tls-san"] == ["192.5.87.10"]
    assert config["write-kubeconfig-mode"] == "0600"
    assert _file(doc, "/etc/rancher/k3s/registries.yaml") is None
    install = doc["runcmd"][-1][-1]
    assert "raw.githubusercontent.com/k3s-io/k3s/v1.33.2%2Bk3s1/install.sh" in install
    assert "INSTALL_K3S_VERSION='v1.33.2+k3s1'" in install and install.endswith("sh -s - server")
    assert doc["runcmd"][0] == ["/usr/local/sbin/chiml-firewall"]


def test_registry_mirror(rendered: dict[str, str]) -> None:
    registries = yaml.safe_load(_file(_doc(rendered["server_mirror"]), "/etc/rancher/k3s/registries.yaml") or "")
    assert registries == {"mirrors": {"docker.io": {"endpoint": ["https://mirror.example.org"]}}}


def test_gpu_agent_installs_the_toolkit_before_k3s(rendered: dict[str, str]) -> None:
    doc = _doc(rendered["gpu_agent"])
    commands = [" ".join(step) for step in doc["runcmd"]]
    toolkit = commands.index("/usr/local/sbin/chiml-nvidia-toolkit")
    k3s = next(i for i, c in enumerate(commands) if "install.sh" in c)
    assert toolkit < k3s
    script = _file(doc, "/usr/local/sbin/chiml-nvidia-toolkit") or ""
    assert '"nvidia-container-toolkit=$VERSION"' in script and 'VERSION="1.17.8-1"' in script
    config = yaml.safe_load(_file(doc, "/etc/rancher/k3s/config.yaml") or "")
    assert config["server"] == "https://10.140.81.10:6443" and config["node-label"] == ["chiml.io/gpu=true"]
    assert "INSTALL_K3S_EXEC=agent" in commands[k3s]


def test_cpu_agent_has_no_toolkit(rendered: dict[str, str]) -> None:
    doc = _doc(rendered["cpu_agent"])
    assert _file(doc, "/usr/local/sbin/chiml-nvidia-toolkit") is None
    assert all("nvidia" not in " ".join(step) for step in doc["runcmd"])


def test_firewall_limits_ssh_and_api_to_the_admin_cidr(rendered: dict[str, str]) -> None:
    server = _file(_doc(rendered["server"]), "/usr/local/sbin/chiml-firewall") or ""
    agent = _file(_doc(rendered["cpu_agent"]), "/usr/local/sbin/chiml-firewall") or ""
    assert 'source address="198.51.100.7/32" port port="6443"' in server
    assert 'source address="198.51.100.7/32" port port="22"' in server
    assert 'port="6443"' not in agent
    assert "--remove-service=ssh" in server and "--add-service=http --add-service=https" in server
    assert "10.140.80.0/22 10.42.0.0/16 10.43.0.0/16" in server


@pytest.mark.parametrize("name", ["server", "server_mirror", "cpu_agent", "gpu_agent"])
def test_scripts_are_valid_shell(rendered: dict[str, str], name: str, tmp_path: Path) -> None:
    doc = _doc(rendered[name])
    for item in doc["write_files"]:
        if item["content"].startswith("#!/bin/sh"):
            script = tmp_path / "script.sh"
            script.write_text(item["content"])
            result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
            assert result.returncode == 0, f"{item['path']}: {result.stderr}"


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init not installed (apt-get install cloud-init)")
@pytest.mark.parametrize("name", ["server", "server_mirror", "cpu_agent", "gpu_agent"])
def test_cloud_init_schema(rendered: dict[str, str], name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(rendered[name])
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout
