"""What the infrastructure layer hands the Helm layer: a description of a ready cluster.

The chameleon profile builds one after Terraform and k3s; the kubernetes profile builds one
from the current kubeconfig. The Helm installer only ever sees this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# The label the Terraform node module puts on GPU nodes (terraform/modules/k3s-node/main.tf);
# training Jobs that want a GPU select it.
GPU_NODE_LABEL = "chiml.io/gpu"
# The extended resource the NVIDIA device plugin advertises and a pod requests.
GPU_RESOURCE = "nvidia.com/gpu"
# Labels that mark a GPU node before the device plugin has advertised GPU_RESOURCE: NFD's PCI
# vendor label for NVIDIA (10de), the GPU operator's, and chiml's own (a user can set it by hand).
GPU_LABELS = ("feature.node.kubernetes.io/pci-10de.present", "nvidia.com/gpu.present", GPU_NODE_LABEL)


def is_gpu_node(labels: Mapping[str, str], allocatable: Mapping[str, Any] | None = None) -> bool:
    """Whether a node has NVIDIA GPUs: it advertises them, or one of :data:`GPU_LABELS` says so."""
    advertised = str((allocatable or {}).get(GPU_RESOURCE, "0"))
    return advertised not in ("0", "") or any(labels.get(label) == "true" for label in GPU_LABELS)


@dataclass
class NodeInfo:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    gpu: bool = False


@dataclass
class ClusterDescription:
    kubeconfig: str
    api_endpoint: str
    kubernetes_version: str
    nodes: list[NodeInfo] = field(default_factory=list)
    storage_class: str = "local-path"
    ingress_base_url: str | None = None  # e.g. http://203.0.113.7.nip.io
    ingress_class: str = "traefik"

    @property
    def has_gpu(self) -> bool:
        return any(node.gpu for node in self.nodes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterDescription:
        nodes = [NodeInfo(**n) for n in data.get("nodes", [])]
        return cls(**{**data, "nodes": nodes})
