"""k3s after Terraform: wait until every node is Ready, fetch the kubeconfig, describe the cluster.

Bare-metal nodes take 10-20 minutes to boot and then run cloud-init (toolkit, k3s), so waiting
tolerates SSH being refused or timing out for a long time; what it does not tolerate is a
cloud-init that finished with an error, which is reported with the failing node's log tail.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from chiml.chameleon.ssh import Connector
from chiml.cluster import ClusterDescription, NodeInfo, is_gpu_node
from chiml.errors import ChimlError

KUBECTL_NODES = "sudo k3s kubectl get nodes -o json"
CLOUD_INIT_STATUS = "cloud-init status --format json || true"
# The containerd configuration k3s generates at start; it holds an nvidia runtime only when
# nvidia-container-runtime was on PATH then (the toolkit installed before k3s).
K3S_CONTAINERD = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
NVIDIA_RUNTIME = re.compile(r"runtimes\.['\"]?nvidia['\"]?\]")
FIND_NVIDIA_RUNTIME = "command -v nvidia-container-runtime"


def _ready(node: dict[str, Any]) -> bool:
    for condition in node.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def _cloud_init_error(shell: Any) -> str | None:
    """cloud-init's own verdict on the node: an error string when it finished badly."""
    _, out, _ = shell.run(CLOUD_INIT_STATUS, timeout=30)
    try:
        status = json.loads(out)
    except ValueError:
        return None
    if status.get("status") == "error" or status.get("errors"):
        errors = "; ".join(str(e) for e in status.get("errors") or []) or "status error"
        _, tail, _ = shell.run("sudo tail -n 5 /var/log/cloud-init-output.log", timeout=30)
        return f"{errors} | {' / '.join(tail.strip().splitlines()[-3:])}"
    return None


def wait_for_nodes(
    connector: Connector,
    expected: list[str],
    agents: dict[str, str],
    timeout_s: float,
    poll_s: float = 20.0,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[dict[str, Any]]:
    """Block until every expected node is registered and Ready; return `kubectl get nodes` items.

    ``agents`` maps agent names to private IPs, so a node that never registers can be asked
    through the jump host why (its cloud-init status).
    """
    deadline = clock() + timeout_s
    last = "waiting for SSH on the server"
    while True:
        try:
            shell = connector.connect(None)
        except Exception as err:  # booting: refused, timeouts, no route, auth not yet set up
            last = f"server not reachable over SSH yet ({err.__class__.__name__})"
        else:
            try:
                code, out, err_text = shell.run(KUBECTL_NODES, timeout=60)
                if code == 0:
                    items = json.loads(out).get("items", [])
                    by_name = {item["metadata"]["name"]: item for item in items}
                    missing = [name for name in expected if name not in by_name]
                    not_ready = [name for name in expected if name in by_name and not _ready(by_name[name])]
                    if not missing and not not_ready:
                        return [by_name[name] for name in expected]
                    last = f"nodes not registered: {missing or '-'}; not Ready: {not_ready or '-'}"
                    failure = _cloud_init_error(shell)
                    if failure:
                        raise ChimlError(f"cloud-init failed on the server: {failure}")
                    for name in missing:
                        if name in agents:
                            _check_agent(connector, name, agents[name])
                else:
                    last = f"k3s not answering yet ({err_text.strip().splitlines()[-1] if err_text.strip() else code})"
                    failure = _cloud_init_error(shell)
                    if failure:
                        raise ChimlError(f"cloud-init failed on the server: {failure}")
            finally:
                shell.close()
        if progress:
            progress(last)
        if clock() >= deadline:
            raise ChimlError(
                f"k3s was not ready within {timeout_s:.0f} s: {last}",
                hint="bare metal takes 10-20 min to boot; raise chameleon.k3s_timeout_s, or `ssh -F "
                "<CHIML_HOME>/chameleon/ssh_config <node>` and read /var/log/cloud-init-output.log",
            )
        time.sleep(poll_s)


def _check_agent(connector: Connector, name: str, address: str) -> None:
    try:
        shell = connector.connect(address)
    except Exception:
        return  # still booting
    try:
        failure = _cloud_init_error(shell)
    finally:
        shell.close()
    if failure:
        raise ChimlError(f"cloud-init failed on {name}: {failure}")


def check_gpu_runtimes(connector: Connector, gpu_agents: dict[str, str]) -> None:
    """Check over SSH that every GPU agent can run GPU pods; raise naming each one that cannot.

    Labels cannot tell: they come from the node's configuration, written before anything was
    installed. What matters is that the toolkit's ``nvidia-container-runtime`` exists and that
    k3s found it when it started, i.e. that its containerd configuration has the nvidia runtime.
    """
    problems: list[str] = []
    for name, address in gpu_agents.items():
        try:
            shell = connector.connect(address)
        except Exception as err:
            problems.append(f"{name}: not reachable over SSH ({err.__class__.__name__})")
            continue
        try:
            code, out, _ = shell.run(FIND_NVIDIA_RUNTIME, timeout=30)
            if code != 0 or not out.strip():
                problems.append(f"{name}: nvidia-container-runtime is not installed")
            code, out, err_text = shell.run(f"sudo cat {K3S_CONTAINERD}", timeout=30)
            if code != 0:
                problems.append(f"{name}: cannot read {K3S_CONTAINERD} ({err_text.strip() or code})")
            elif not NVIDIA_RUNTIME.search(out):
                problems.append(f"{name}: k3s's containerd has no nvidia runtime (toolkit missing when k3s started)")
        finally:
            shell.close()
    if problems:
        raise ChimlError(
            f"GPU nodes cannot run GPU pods: {'; '.join(problems)}",
            hint="read /var/log/cloud-init-output.log on the node (`ssh -F <CHIML_HOME>/chameleon/ssh_config "
            "<node>`); after fixing the toolkit, `sudo systemctl restart k3s-agent` rewrites containerd's config",
        )


def fetch_kubeconfig(connector: Connector, floating_ip: str, context: str, dest: Path) -> Path:
    """Copy the server's kubeconfig to ``dest`` (0600), pointing at the floating IP."""
    shell = connector.connect(None)
    try:
        code, out, err = shell.run("sudo cat /etc/rancher/k3s/k3s.yaml", timeout=30)
    finally:
        shell.close()
    if code != 0:
        raise ChimlError(f"cannot read the kubeconfig on the server: {err.strip() or code}")
    try:
        config = yaml.safe_load(out)
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://{floating_ip}:6443"
            cluster["name"] = context
        for ctx in config["contexts"]:
            ctx["name"] = context
            ctx["context"]["cluster"] = context
            ctx["context"]["user"] = context
        for user in config["users"]:
            user["name"] = context
        config["current-context"] = context
    except (yaml.YAMLError, KeyError, TypeError) as error:
        raise ChimlError(f"the server's kubeconfig is not what k3s writes: {error}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    os.replace(tmp, dest)
    return dest


def describe_cluster(nodes: list[dict[str, Any]], kubeconfig: Path, floating_ip: str) -> ClusterDescription:
    """What the Helm layer gets: API, version, nodes with their GPU flag, storage and ingress."""
    infos = []
    for item in nodes:
        labels = dict(item["metadata"].get("labels", {}))
        allocatable = (item.get("status") or {}).get("allocatable")
        infos.append(NodeInfo(name=item["metadata"]["name"], labels=labels, gpu=is_gpu_node(labels, allocatable)))
    version = nodes[0]["status"]["nodeInfo"]["kubeletVersion"] if nodes else ""
    return ClusterDescription(
        kubeconfig=str(kubeconfig),
        api_endpoint=f"https://{floating_ip}:6443",
        kubernetes_version=version,
        nodes=infos,
        storage_class="local-path",
        # nip.io resolves <ip>.nip.io to the IP: host-based ingress rules without DNS.
        ingress_base_url=f"http://{floating_ip}.nip.io",
        ingress_class="traefik",
    )
