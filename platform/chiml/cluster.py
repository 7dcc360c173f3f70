"""What the infrastructure layer hands the Helm layer: a description of a ready cluster.

The chameleon profile builds one after Terraform and k3s; the kubernetes profile builds one
from the current kubeconfig. The Helm installer only ever sees this.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
