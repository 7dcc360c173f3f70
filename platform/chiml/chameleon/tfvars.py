"""chiml.yaml + the lease -> the Terraform variables of the root module (terraform/).

Users never edit tfvars: this is the only place they are written. Keys must match the root
module's variables exactly (a test parses the HCL and checks both directions).
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
    """The repository's terraform/ folder: the root module, with its modules (they ship with the checkout)."""
    root = repo_root()
    if root is None or not (root / "terraform" / "main.tf").is_file():
        from chiml.errors import NotSupportedError

        raise NotSupportedError("terraform/ not found: the chameleon profile runs from a chiml source checkout")
    return root / "terraform"


# The working directory (under CHIML_HOME/chameleon/terraform/) of a deployment made since one root
# module serves every site. Deployments made earlier keep theirs (`baremetal`, `kvm`): its name is
# recorded in state.
WORKDIR = "cluster"


def build_tfvars(cfg: ChameleonConfig, admin_cidr: str, lease: LeaseInfo | None, name: str | None = None
                 ) -> dict[str, Any]:
    """The variables of the root module; without a lease (dry run) its values are placeholders.

    ``name`` is the deployment's unique name (configured name + per-user suffix), which prefixes
    every resource Terraform creates.
    """
    def placement(group: str) -> dict[str, str | None]:
        """Where a group runs: its node reservation (bare metal) or its reserved flavor (KVM@TACC)."""
        if lease is None:
            chosen: str | None = PLACEHOLDER if getattr(cfg, group).count else None
        else:
            chosen = (lease.flavors if cfg.is_kvm else lease.reservations).get(group)
        return {"reservation_id": None if cfg.is_kvm else chosen, "flavor_id": chosen if cfg.is_kvm else None}

    return {
        "region": cfg.site,
        "deployment": name or cfg.deployment,
        "key_name": cfg.key_name,
        "admin_cidr": admin_cidr,
        "network_name": cfg.network,
        "private_network": cfg.private_network,
        "image": cfg.image,
        "gpu_image": cfg.gpu_image,
        "server": placement("server"),
        "agents": {kind: {"count": getattr(cfg, group).count, **placement(group)}
                   for kind, group in (("cpu", "cpu_agents"), ("gpu", "gpu_agents"))},
        "floating_ip_address": lease.floating_ip if lease else PLACEHOLDER,
        "k3s_version": cfg.k3s_version,
        "nvidia_toolkit_version": cfg.nvidia_toolkit_version,
        "registry_mirror": cfg.registry_mirror,
    }


def write_tfvars(path: Path, values: dict[str, Any]) -> Path:
    """``*.tfvars.json`` (Terraform reads JSON variable files natively; null means 'use the default')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
