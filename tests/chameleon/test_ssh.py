"""The real paramiko connector and the k3s steps over SSH, against fake nodes speaking SSH."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
import yaml

from chiml.chameleon.k3s import fetch_kubeconfig, wait_for_nodes
from chiml.chameleon.ssh import ParamikoConnector, SSHTarget, render_ssh_config
from chiml.errors import ChimlError
from tests.chameleon.fakes import K3S_KUBECONFIG
from tests.chameleon.sshd import FakeSSHNode, write_client_key

NODES = {"items": [
    {"metadata": {"name": n, "labels": {"chiml.io/gpu": "true" if "gpu" in n else "false"}},
     "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.2+k3s1"}}}
    for n in ("chiml-server", "chiml-gpu-0")
]}


def _server_answers(command: str) -> tuple[int, str, str]:
    if command == "sudo k3s kubectl get nodes -o json":
        return 0, json.dumps(NODES), ""
    if command == "sudo cat /etc/rancher/k3s/k3s.yaml":
        return 0, K3S_KUBECONFIG, ""
    return 127, "", "not found"


def _agent_answers(command: str) -> tuple[int, str, str]:
    if command == "hostname":
        return 0, "chiml-gpu-0\n", ""
    return 127, "", "not found"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[SSHTarget, FakeSSHNode, FakeSSHNode]]:
    key_path = tmp_path / "id_rsa"
    client_key = write_client_key(key_path)
    agent = FakeSSHNode(client_key, _agent_answers)
    server = FakeSSHNode(client_key, _server_answers)
    server.forwards[("10.140.81.30", 22)] = agent.port
    target = SSHTarget(user="cc", key_path=key_path, jump_host="127.0.0.1", known_hosts=tmp_path / "known_hosts",
                       connect_timeout_s=5, port=server.port)
    yield target, server, agent
    server.close()
    agent.close()


def test_runs_commands_on_the_server_and_pins_its_host_key(cluster) -> None:
    target, server, _ = cluster
    shell = ParamikoConnector(target).connect(None)
    try:
        assert shell.run("sudo cat /etc/rancher/k3s/k3s.yaml")[0] == 0
        assert shell.run("nonsense") == (127, "", "not found")
    finally:
        shell.close()
    assert server.host_key.get_base64() in target.known_hosts.read_text()


def test_reaches_an_agent_through_the_server(cluster) -> None:
    target, server, agent = cluster
    shell = ParamikoConnector(target).connect("10.140.81.30")
    try:
        assert shell.run("hostname") == (0, "chiml-gpu-0\n", "")
    finally:
        shell.close()
    assert server.forwarded == ["10.140.81.30"] and agent.commands == ["hostname"]


def test_wrong_key_is_refused(cluster, tmp_path: Path) -> None:
    target, _, _ = cluster
    other = tmp_path / "other"
    write_client_key(other)
    target.key_path = other
    with pytest.raises(paramiko.AuthenticationException):
        ParamikoConnector(target).connect(None)


def test_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    target = SSHTarget(user="cc", key_path=tmp_path / "nope", jump_host="127.0.0.1", known_hosts=tmp_path / "kh")
    with pytest.raises(ChimlError, match=r"SSH private key .* not found"):
        ParamikoConnector(target)


def test_k3s_wait_and_kubeconfig_over_real_ssh(cluster, tmp_path: Path) -> None:
    target, server, _ = cluster
    connector = ParamikoConnector(target)
    nodes = wait_for_nodes(connector, ["chiml-server", "chiml-gpu-0"], {"chiml-gpu-0": "10.140.81.30"},
                           timeout_s=10, poll_s=0)
    assert [n["metadata"]["name"] for n in nodes] == ["chiml-server", "chiml-gpu-0"]
    dest = fetch_kubeconfig(connector, "192.5.87.10", "chiml", tmp_path / "kubeconfig")
    config = yaml.safe_load(dest.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://192.5.87.10:6443"
    assert "sudo cat /etc/rancher/k3s/k3s.yaml" in server.commands


def test_ssh_config_names_every_node(cluster) -> None:
    target, _, _ = cluster
    text = render_ssh_config(target, "chiml-server", [{"name": "chiml-gpu-0", "private_ip": "10.140.81.30"}])
    assert f"Host chiml-server\n    HostName 127.0.0.1\n    Port {target.port}\n" in text
    assert "Host chiml-gpu-0\n    HostName 10.140.81.30\n    ProxyJump chiml-server\n" in text
    assert f"IdentityFile {target.key_path}" in text
