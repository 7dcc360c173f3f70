"""Each k3s node, checked over SSH: service, membership, GPU driver and container runtime."""

from __future__ import annotations

import json
import re

from chiml.chameleon.k3s import K3S_CONTAINERD, NVIDIA_RUNTIME


def test_k3s_service_is_active_and_enabled(host, node) -> None:
    service = host.service("k3s" if node["role"] == "server" else "k3s-agent")
    assert service.is_running
    assert service.is_enabled


def test_every_node_is_ready(host, server, nodes) -> None:
    result = host.run("sudo k3s kubectl get nodes -o json")
    assert result.rc == 0, result.stderr
    ready = {}
    for item in json.loads(result.stdout)["items"]:
        conditions = {c["type"]: c["status"] for c in item["status"]["conditions"]}
        ready[item["metadata"]["name"]] = conditions.get("Ready") == "True"
    assert ready == {name: True for name in nodes}


def test_api_listens(host, server) -> None:
    assert host.socket("tcp://0.0.0.0:6443").is_listening or host.socket("tcp://:::6443").is_listening


def test_nvidia_runtimeclass_exists(host, server, nodes) -> None:
    if not any(n["gpu"] for n in nodes.values()):
        return
    result = host.run("sudo k3s kubectl get runtimeclass nvidia -o jsonpath={.handler}")
    assert result.rc == 0 and result.stdout.strip() == "nvidia", result.stderr


def test_nvidia_smi_sees_a_gpu(host, gpu_node) -> None:
    result = host.run("nvidia-smi -L")
    assert result.rc == 0, result.stderr
    assert re.search(r"^GPU 0: ", result.stdout, flags=re.M)


def test_containerd_has_the_nvidia_runtime(host, gpu_node) -> None:
    with host.sudo():
        config = host.file(K3S_CONTAINERD)
        assert config.exists, f"{K3S_CONTAINERD} missing: k3s agent not started?"
        content = config.content_string
    # k3s writes it only when it found nvidia-container-runtime at start (toolkit before k3s)
    assert NVIDIA_RUNTIME.search(content), "k3s did not configure the nvidia runtime"
    assert "nvidia-container-runtime" in content


def test_gpu_nodes_are_labelled(host, server, nodes) -> None:
    result = host.run("sudo k3s kubectl get nodes -o json")
    assert result.rc == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    labels = {item["metadata"]["name"]: item["metadata"].get("labels", {}) for item in items}
    for name, node in nodes.items():
        assert (labels.get(name, {}).get("chiml.io/gpu") == "true") == node["gpu"], name
