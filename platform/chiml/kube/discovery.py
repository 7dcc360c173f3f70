"""Describe an existing cluster (for the kubernetes profile) from what its API server reports."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from chiml.cluster import ClusterDescription
from chiml.config.kubernetes import KubernetesConfig
from chiml.kube.kubeapi import KubeApi


def default_ingress_base_url(api_endpoint: str) -> str | None:
    """http://<IP>.nip.io when the API server is addressed by a public-looking IP (k3s on one node).

    nip.io resolves <IP>.nip.io and any subdomain to <IP>, which gives every UI its own host name
    on a floating IP without DNS setup. Anything else (a DNS name, a private or loopback address)
    gets no default: the user sets kubernetes.ingress_base_url.
    """
    host = urlsplit(api_endpoint).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback or address.version != 4:
        return None
    return f"http://{address}.nip.io"


def describe_cluster(api: KubeApi, cfg: KubernetesConfig) -> ClusterDescription:
    """Nodes (with GPU flags), version, default StorageClass and ingress of the current cluster."""
    return ClusterDescription(
        kubeconfig=api.kubeconfig,
        api_endpoint=api.host,
        kubernetes_version=api.server_version(),
        nodes=api.nodes(),
        storage_class=cfg.storage_class or api.default_storage_class() or "local-path",
        ingress_base_url=cfg.ingress_base_url or default_ingress_base_url(api.host),
        ingress_class="traefik",
    )
