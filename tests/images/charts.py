"""Render our charts as `chiml up` would: helm/values/<release>.yaml with its placeholders filled,
the image keys set from services/images.yaml (chiml.images.Catalog.apply, as the installer does),
then the real `helm template`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from podman_kubelet import Manifests, helm_template

from chiml.images import Catalog
from chiml.kube.values import RenderContext, load_values

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / ".tools" / "bin" / "helm"
CONTEXT = RenderContext(namespace="chiml", ingress_domain="chiml.test", ingress_scheme="http",
                        ingress_class="traefik", storage_class="local-path")


def render(release: str, catalog: Catalog, sets: dict[str, str] | None = None,
           overrides: dict | None = None) -> Manifests:
    """Render our chart ``release`` (helm/charts/<release>) with chiml's values for it."""
    values = catalog.apply(release, load_values(REPO / "helm" / "values" / f"{release}.yaml", CONTEXT))
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(values, handle)
    try:
        return helm_template(HELM, REPO / "helm" / "charts" / release, [Path(handle.name)], sets)
    finally:
        Path(handle.name).unlink()
