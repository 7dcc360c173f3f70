"""chiml.yaml + the lease -> the Terraform variables of the root configuration (terraform/cluster).

Users never edit tfvars: this is the only place they are written. Keys must match the root
configuration's variables exactly (a test parses the HCL and checks both directions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chiml.chameleon.lease import LeaseInfo
from chiml.config.chameleon import ChameleonConfig
from chiml.paths import repo_root

PLACEHOLDER = "<from the lease>"


def terraform_source_dir() -> Path:
    """The repository's terraform/ folder (the modules ship with the source checkout)."""
    root = repo_root()
    if root is None or not (root / "terraform").is_dir():
        from chiml.errors import NotSupportedError

        raise NotSupportedError("terraform/ not found: the chameleon profile runs from a chiml source checkout")
    return root / "terraform"


ROOT = "cluster"  # terraform/cluster: the one root configuration, bare metal and KVM@TACC alike


def root_config_name(cfg: ChameleonConfig) -> str:
    """The root configuration under terraform/ (one for every site: the lease decides the hardware)."""
    return ROOT


def build_tfvars(cfg: ChameleonConfig, admin_cidr: str, lease: LeaseInfo | None, name: str | None = None
                 ) -> dict[str, Any]:
    """The variables for ``terraform/<root>``; without a lease (dry run) its values are placeholders.

    ``name`` is the deployment's unique name (configured name + per-user suffix), which prefixes
    every resource Terraform creates.
    """
    def from_lease(mapping: dict[str, str] | None, group: str) -> str | None:
        if getattr(cfg, group).count == 0:
            return None
        if mapping is None:
            return PLACEHOLDER
        return mapping[group]

    reservations = lease.reservations if lease else None
    flavors = lease.flavors if lease else None
    values: dict[str, Any] = {
        "region": cfg.site,
        "deployment": name or cfg.deployment,
        "key_name": cfg.key_name,
        "admin_cidr": admin_cidr,
        "network_name": cfg.network,
        "private_network": cfg.private_network,
        "image": cfg.image,
        "gpu_image": cfg.gpu_image,
        "cpu_agent_count": cfg.cpu_agents.count,
        "gpu_agent_count": cfg.gpu_agents.count,
        "floating_ip_address": lease.floating_ip if lease else PLACEHOLDER,
        "k3s_version": cfg.k3s_version,
        "nvidia_toolkit_version": cfg.nvidia_toolkit_version,
        "registry_mirror": cfg.registry_mirror,
    }
    # KVM@TACC schedules on the reserved flavor, bare metal on the reservation hint: the other is null.
    for group, prefix in (("server", "server"), ("cpu_agents", "cpu_agent"), ("gpu_agents", "gpu_agent")):
        values[f"{prefix}_flavor_id"] = from_lease(flavors, group) if cfg.is_kvm else None
        values[f"{prefix}_reservation_id"] = None if cfg.is_kvm else from_lease(reservations, group)
    return values


def write_tfvars(path: Path, values: dict[str, Any]) -> Path:
    """``*.tfvars.json`` (Terraform reads JSON variable files natively; null means 'use the default')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
