"""The `kubernetes:` section: the Helm layer on an existing cluster (or Chameleon's k3s)."""

from __future__ import annotations

from pydantic import Field, field_validator

from chiml.config.base import Section


class KubernetesConfig(Section):
    """Which cluster and namespace the platform's Helm releases go to, and how they are reached."""

    kubeconfig: str | None = Field(None, description="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    context: str | None = Field(None, description="kubeconfig context (default: the current one)")
    namespace: str = Field(
        "chiml",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="namespace of the platform's own releases and of the model endpoints",
    )
    helm_dir: str | None = Field(
        None, description="directory holding releases.yaml, values/ and charts/ (default: the checkout's helm/)"
    )
    ingress_base_url: str | None = Field(
        None,
        description="base URL of the ingress, e.g. http://203.0.113.7.nip.io (default: <API server IP>.nip.io)",
    )
    storage_class: str | None = Field(None, description="StorageClass for volumes (default: the cluster's default)")
    skip_releases: list[str] = Field(
        default_factory=list, description="releases of helm/releases.yaml not to install (e.g. cert-manager you run)"
    )
    helm_timeout_scale: float = Field(
        1.0, gt=0, le=10, description="multiplies every release's readiness timeout (slow image pulls)"
    )

    @field_validator("ingress_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value
