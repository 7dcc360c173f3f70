"""Values files: read helm/values/<release>.yaml and fill the cluster-specific placeholders.

Values files stay plain YAML that users edit. The few things only known at install time (the
ingress domain, the StorageClass, the platform namespace) are written as ``${name}`` inside
strings and substituted on the parsed tree, never on the raw text, so a placeholder can never
inject YAML. An unknown placeholder is an error, not an empty string.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from chiml.cluster import ClusterDescription
from chiml.errors import ChimlError, InvalidInputError

PLACEHOLDER = re.compile(r"\$\{([a-z_]+)\}")


@dataclass(frozen=True)
class RenderContext:
    """What a values file may refer to as ``${...}``."""

    namespace: str
    ingress_domain: str
    ingress_scheme: str
    ingress_class: str
    storage_class: str

    @classmethod
    def for_cluster(cls, cluster: ClusterDescription, namespace: str) -> RenderContext:
        scheme, domain = "http", "chiml.local"
        if cluster.ingress_base_url:
            parts = urlsplit(cluster.ingress_base_url)
            scheme, domain = parts.scheme or "http", parts.hostname or domain
        return cls(
            namespace=namespace,
            ingress_domain=domain,
            ingress_scheme=scheme,
            ingress_class=cluster.ingress_class,
            storage_class=cluster.storage_class,
        )

    def url(self, host_prefix: str) -> str:
        """The public URL of a UI published at ``<prefix>.<ingress domain>``."""
        return f"{self.ingress_scheme}://{host_prefix}.{self.ingress_domain}"


def substitute(node: Any, context: RenderContext, where: str = "") -> Any:
    """Replace ``${name}`` in every string of a parsed YAML tree."""
    variables = asdict(context)
    if isinstance(node, dict):
        return {key: substitute(value, context, f"{where}.{key}" if where else str(key)) for key, value in node.items()}
    if isinstance(node, list):
        return [substitute(item, context, f"{where}[{i}]") for i, item in enumerate(node)]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in variables:
                known = ", ".join(sorted(variables))
                raise InvalidInputError(f"{where}: unknown placeholder ${{{name}}} (known: {known})")
            return str(variables[name])

        return PLACEHOLDER.sub(replace, node)
    return node


def load_values(path: Path, context: RenderContext) -> dict[str, Any]:
    """A values file, parsed and with its placeholders filled."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise InvalidInputError(f"{path}:{line}: not valid YAML: {getattr(err, 'problem', None) or err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: a values file must be a mapping, not {type(data).__name__}")
    try:
        return substitute(data, context)
    except ChimlError as err:
        raise InvalidInputError(f"{path}: {err.message}") from None
