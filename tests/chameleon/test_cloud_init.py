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

NODE = MODULES / "k3s-node"
FIREWALL = 'templatefile("{m}/templates/firewall.sh.tftpl", {{ cluster_cidr = "10.140.80.0/22", admin_cidr = "198.51.100.7/32", admin_ports = {ports} }})'  # noqa: E501
# The node's cloud-init as main.tf renders it, for one role; `config` is its k3s config.
NODE_CLOUD_INIT = (
    'jsonencode(templatefile("{m}/templates/cloud-init.yaml.tftpl", {{ '
    "k3s_config = yamlencode({config}), registry_mirror = {mirror}, gpu = {gpu}, "
    "firewall_script = {firewall}, "
    'nvidia_toolkit_script = templatefile("{m}/templates/nvidia-toolkit.sh.tftpl", {{ version = "1.17.8-1" }}), '
    'bootstrap_script = templatefile("{m}/templates/bootstrap.sh.tftpl", {{ k3s_version = "v1.33.2+k3s1", '
    'role = "{role}", gpu = {gpu} }}) }}))'
)
SERVER_CONFIG = ('{ "write-kubeconfig-mode" = "0600", "tls-san" = ["192.5.87.10"], token = "t0k3n", '
                 '"node-label" = ["chiml.io/role=server"] }')
AGENT_CONFIG = '{{ server = "https://10.140.81.10:6443", token = "t0k3n", "node-label" = ["chiml.io/gpu={gpu}"] }}'
BOOTSTRAP = "/usr/local/sbin/chiml-bootstrap"
TOOLKIT = "/usr/local/sbin/chiml-nvidia-toolkit"


def _render_all() -> dict[str, str]:
    def node(role: str, gpu: str, mirror: str = "null") -> str:
        ports = "[22, 6443]" if role == "server" else "[22]"
        config = SERVER_CONFIG if role == "server" else AGENT_CONFIG.format(gpu=gpu)
        return NODE_CLOUD_INIT.format(m=NODE, role=role, gpu=gpu, mirror=mirror, config=config,
                                      firewall=FIREWALL.format(m=NODE, ports=ports))

    exprs = {
        "server": node("server", "false"),
        "server_mirror": node("server", "false", '"https://mirror.example.org"'),
        "cpu_agent": node("agent", "false"),
        "gpu_agent": node("agent", "true"),
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
    main = (NODE / "main.tf").read_text()
    for template, keys in (
        ("cloud-init.yaml.tftpl", {"k3s_config", "registry_mirror", "gpu", "firewall_script", "nvidia_toolkit_script",
                                   "bootstrap_script"}),
        ("bootstrap.sh.tftpl", {"k3s_version", "role", "gpu"}),
        ("firewall.sh.tftpl", {"cluster_cidr", "admin_cidr", "admin_ports"}),
        ("nvidia-toolkit.sh.tftpl", {"version"}),
    ):
        call = main[main.index(template):]
        indent = "    " if template == "cloud-init.yaml.tftpl" else "      "
        body = call[: call.index("\n" + indent[:-2] + "})")]
        top_level = set(re.findall(rf"^{indent}(\w+)\s*=", body, flags=re.M))
        assert top_level == keys, template
    # one home for the node templates: nothing else in terraform/ carries one
    assert sorted(p.name for p in MODULES.rglob("*.tftpl")) == sorted(p.name for p in (NODE / "templates").iterdir())


def test_server(rendered: dict[str, str]) -> None:
    doc = _doc(rendered["server"])
    config = yaml.safe_load(_file(doc, "/etc/rancher/k3s/config.yaml") or "")
    assert config["tls-san"] == ["192.5.87.10"]
    assert config["write-kubeconfig-mode"] == "0600"
    assert _file(doc, "/etc/rancher/k3s/registries.yaml") is None
    # one runcmd entry: cloud-init's status is that of runcmd's last command
    assert doc["runcmd"] == [[BOOTSTRAP]]
    script = _file(doc, BOOTSTRAP) or ""
    assert "\nset -eu\n" in script
    assert "raw.githubusercontent.com/k3s-io/k3s/v1.33.2%2Bk3s1/install.sh" in script
    assert "INSTALL_K3S_VERSION='v1.33.2+k3s1' sh \"$installer\" server" in script
    assert not re.search(r"^[^#]*\|\s*sh", script, flags=re.M) and "--retry 5" in script
    assert script.index("/usr/local/sbin/chiml-firewall") < script.index("install.sh")


def test_registry_mirror(rendered: dict[str, str]) -> None:
    registries = yaml.safe_load(_file(_doc(rendered["server_mirror"]), "/etc/rancher/k3s/registries.yaml") or "")
    assert registries == {"mirrors": {"docker.io": {"endpoint": ["https://mirror.example.org"]}}}


def test_gpu_agent_installs_the_toolkit_before_k3s(rendered: dict[str, str]) -> None:
    doc = _doc(rendered["gpu_agent"])
    assert doc["runcmd"] == [[BOOTSTRAP]]
    bootstrap = _file(doc, BOOTSTRAP) or ""
    assert bootstrap.index(TOOLKIT) < bootstrap.index("install.sh")
    assert "INSTALL_K3S_EXEC=agent sh \"$installer\"" in bootstrap
    script = _file(doc, TOOLKIT) or ""
    assert '"nvidia-container-toolkit=$VERSION"' in script and 'VERSION="1.17.8-1"' in script
    config = yaml.safe_load(_file(doc, "/etc/rancher/k3s/config.yaml") or "")
    assert config["server"] == "https://10.140.81.10:6443" and config["node-label"] == ["chiml.io/gpu=true"]


def test_toolkit_step_survives_first_boot(rendered: dict[str, str]) -> None:
    """Waits for the dpkg lock, retries downloads, and never pipes a download into another command."""
    script = _file(_doc(rendered["gpu_agent"]), TOOLKIT) or ""
    assert "DPkg::Lock::Timeout=" in script and "$APT update" in script and "$APT install" in script
    assert "--retry 5" in script
    assert not re.search(r"^[^#]*curl[^\n#]*\|", script, flags=re.M), "a piped download hides curl's failure"


def test_cpu_agent_has_no_toolkit(rendered: dict[str, str]) -> None:
    doc = _doc(rendered["cpu_agent"])
    assert _file(doc, TOOLKIT) is None
    assert TOOLKIT not in (_file(doc, BOOTSTRAP) or "")


def _sandbox(tmp_path: Path, script: str, fail: str | None) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run a rendered script with its commands replaced by stubs that log their call (one may fail)."""
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for name in ("chiml-firewall", "chiml-nvidia-toolkit", "curl", "gpg", "apt-get", "nvidia-smi", "grep", "sed"):
        code = 22 if name == fail else 0
        body = f'#!/bin/sh\necho "{name} $*" >> {log}\n'
        if name == "curl" and code == 0:  # write the "downloaded" file: an installer that logs itself
            body += (f'while [ $# -gt 0 ]; do [ "$1" = -o ] && printf \'echo "k3s-install $*" >> {log}\\n\' > "$2"; '
                     "shift; done\n")
        (stubs / name).write_text(body + f"exit {code}\n")
        (stubs / name).chmod(0o755)
    path = tmp_path / "script.sh"
    path.write_text(script.replace("/usr/local/sbin/", f"{stubs}/"))
    result = subprocess.run(["sh", str(path)], capture_output=True, text=True, timeout=60,
                            env={"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp_path)})
    calls = log.read_text().splitlines() if log.is_file() else []
    return result, [call.split()[0] for call in calls]


def test_bootstrap_runs_every_step_in_order(rendered: dict[str, str], tmp_path: Path) -> None:
    result, calls = _sandbox(tmp_path, _file(_doc(rendered["gpu_agent"]), BOOTSTRAP) or "", fail=None)
    assert result.returncode == 0, result.stderr
    assert calls == ["chiml-firewall", "chiml-nvidia-toolkit", "curl", "k3s-install"]


@pytest.mark.parametrize("failing", ["chiml-firewall", "chiml-nvidia-toolkit", "curl"])
def test_bootstrap_stops_at_the_first_failing_step(rendered: dict[str, str], tmp_path: Path, failing: str) -> None:
    """A failed step fails the script (and so cloud-init), and k3s is never installed after it."""
    result, calls = _sandbox(tmp_path, _file(_doc(rendered["gpu_agent"]), BOOTSTRAP) or "", fail=failing)
    assert result.returncode != 0
    assert calls[-1] == failing and "k3s-install" not in calls


def test_toolkit_stops_when_a_download_fails(rendered: dict[str, str], tmp_path: Path) -> None:
    result, calls = _sandbox(tmp_path, _file(_doc(rendered["gpu_agent"]), TOOLKIT) or "", fail="curl")
    assert result.returncode != 0
    assert calls == ["nvidia-smi", "curl"], "nothing may run on a failed download"


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
