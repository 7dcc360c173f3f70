"""The `chameleon:` section: lease, Terraform and k3s on Chameleon Cloud.

One lease holds one node reservation per node group (server, CPU agents, GPU agents) plus a
floating IP; bare-metal sites reserve hosts by ``node_type`` or ``node_name``, KVM@TACC reserves
flavors.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from chiml.config.base import Section

BARE_METAL_SITES = ("CHI@UC", "CHI@TACC")
KVM_SITES = ("KVM@TACC",)
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_IMAGE = re.compile(r"^CC-Ubuntu2[24]\.04(-CUDA)?$")


class NodeGroup(Section):
    """One kind of node: how many and what to reserve for them."""

    count: int = Field(1, ge=0, le=32, description="number of nodes (the server group is always exactly 1)")
    node_type: str | None = Field(None, description="bare metal: Blazar node_type, e.g. gpu_rtx_6000")
    node_name: str | None = Field(None, description="bare metal: one specific host by name (count must be 1)")
    flavor: str | None = Field(None, description="KVM@TACC: flavor to reserve, e.g. m1.xlarge or g1.h100.pci.1")

    @model_validator(mode="after")
    def _one_selector(self) -> NodeGroup:
        chosen = [name for name in ("node_type", "node_name", "flavor") if getattr(self, name)]
        if len(chosen) > 1:
            raise ValueError(f"give one of node_type, node_name or flavor, not {' and '.join(chosen)}")
        if self.node_name and self.count != 1:
            raise ValueError("node_name reserves one specific host: count must be 1")
        return self

    def selector(self) -> str | None:
        return self.node_type or self.node_name or self.flavor


class ChameleonConfig(Section):
    """Where and what to reserve on Chameleon, and how the k3s cluster is built."""

    site: Literal["CHI@UC", "CHI@TACC", "KVM@TACC"] = Field("CHI@UC", description="Chameleon site")
    lease_hours: int = Field(24, ge=1, le=168, description="lease length (bare metal: at most 7 days)")
    deployment: str = Field(
        "chiml", description="name of this deployment: the lease, instances and network are named after it"
    )
    server: NodeGroup = Field(
        default_factory=lambda: NodeGroup(count=1, node_type="compute_cascadelake_r"),
        description="the k3s server (also runs CPU workloads)",
    )
    cpu_agents: NodeGroup = Field(
        default_factory=lambda: NodeGroup(count=0, node_type="compute_cascadelake_r"), description="CPU agents"
    )
    gpu_agents: NodeGroup = Field(
        default_factory=lambda: NodeGroup(count=1, node_type="gpu_rtx_6000"), description="GPU agents"
    )
    image: str = Field("CC-Ubuntu22.04", description="image of the server and CPU agents")
    gpu_image: str = Field("CC-Ubuntu22.04-CUDA", description="image of GPU agents (a -CUDA image carries the driver)")
    key_name: str | None = Field(None, description="existing Chameleon keypair name (required for `up`)")
    ssh_private_key: str = Field("~/.ssh/id_rsa", description="local private key matching key_name")
    ssh_user: str = Field("cc", description="login user of the CC images")
    admin_cidr: str | None = Field(
        None, description="who may reach SSH and the Kubernetes API (default: the public address `up` runs from, /32)"
    )
    network: str = Field("sharednet1", description="shared network the nodes join (when private_network is false)")
    private_network: bool = Field(False, description="own private network (routed to public) instead of `network`")
    k3s_version: str = Field("v1.33.2+k3s1", description="pinned k3s release")
    nvidia_toolkit_version: str = Field("1.17.8-1", description="pinned NVIDIA container toolkit (GPU agents)")
    registry_mirror: str | None = Field(None, description="pull-through mirror for docker.io (k3s registries.yaml)")
    lease_timeout_s: int = Field(900, ge=30, description="how long to wait for the lease to become ACTIVE")
    k3s_timeout_s: int = Field(2400, ge=60, description="how long to wait for every node to be Ready (boot included)")

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower-case letters, digits and dashes, at most 40 characters")
        return value

    @field_validator("image", "gpu_image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not _IMAGE.match(value):
            raise ValueError("must be CC-Ubuntu22.04, CC-Ubuntu24.04 or a -CUDA variant")
        return value

    @field_validator("admin_cidr")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.IPv4Network(value, strict=False))
        except ValueError:
            raise ValueError("must be an IPv4 CIDR such as 198.51.100.7/32") from None

    @field_validator("k3s_version")
    @classmethod
    def _k3s(cls, value: str) -> str:
        if not re.match(r"^v1\.\d+\.\d+\+k3s\d+$", value):
            raise ValueError("must look like v1.33.2+k3s1")
        return value

    @field_validator("registry_mirror")
    @classmethod
    def _mirror(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _groups_match_site(self) -> ChameleonConfig:
        if self.server.count != 1:
            raise ValueError("server.count must be 1 (one k3s server)")
        if not self.gpu_image.endswith("-CUDA"):
            raise ValueError("gpu_image must be a -CUDA image (it carries the NVIDIA driver)")
        kvm = self.site in KVM_SITES
        for group_name in ("server", "cpu_agents", "gpu_agents"):
            group: NodeGroup = getattr(self, group_name)
            if group.count == 0:
                continue
            if kvm and not group.flavor:
                raise ValueError(f"{group_name}: {self.site} reserves flavors: set {group_name}.flavor")
            if not kvm and not (group.node_type or group.node_name):
                raise ValueError(f"{group_name}: {self.site} reserves hosts: set node_type or node_name")
        return self

    @property
    def is_kvm(self) -> bool:
        return self.site in KVM_SITES
