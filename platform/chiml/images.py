"""chiml's container images: what they are called, how they are built, where they go.

``services/images.yaml`` is the one place that names every image: the registry, the image names
and, per image, the Helm values keys that refer to it. The tag is chiml's version. The build
(`make images`, `chiml images build`, the release workflow) and the Helm installer both read it
through this module, so the image a chart names is the image the build makes.

Builds run with podman, buildah or docker (the first found). Where no registry is reachable the
base image is a local stand-in (scripts/images_setup.sh) and the host's pip configuration (its
index, find-links and CA bundle) is mounted into the build, so an image installs exactly the
wheels the host's pip would.
"""

from __future__ import annotations

import copy
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from chiml import __version__
from chiml.errors import ChimlError

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOG = REPO_ROOT / "services" / "images.yaml"
REGISTRY_ENV = "CHIML_IMAGE_REGISTRY"
ENGINES = ("podman", "buildah", "docker")
# What a `helm:` entry may set: the whole reference, or its repository or tag part.
HELM_FORMS = ("ref", "repository", "tag")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Variant:
    """Another tag built from the same Dockerfile with other build arguments."""

    name: str
    args: dict[str, str]
    local: bool  # False: only the release workflow builds it (e.g. the CUDA trainer)
    platforms: tuple[str, ...] = ("linux/amd64",)


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: Path
    context: Path
    target: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    variants: tuple[Variant, ...] = ()
    unbuildable: str | None = None  # why it cannot be built without its vendor's registry
    helm: dict[str, dict[str, str]] = field(default_factory=dict)
    platforms: tuple[str, ...] = ("linux/amd64",)  # what releases build
    # named build contexts besides `context` (`COPY --from=NAME` in the Dockerfile)
    contexts: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    registry: str
    version: str
    base_image: str
    images: dict[str, Image]

    def repository(self, name: str) -> str:
        return f"{self.registry}/{name}"

    def ref(self, name: str, variant: str | None = None) -> str:
        """``<registry>/<name>:<version>[-<variant>]``."""
        tag = self.version if variant is None else f"{self.version}-{variant}"
        return f"{self.repository(name)}:{tag}"

    def get(self, name: str) -> Image:
        if name not in self.images:
            raise ChimlError(f"no image {name!r} in {CATALOG.name} (known: {', '.join(self.images)})")
        return self.images[name]

    def helm_settings(self, release: str) -> dict[str, str]:
        """The values keys (dotted paths) of one Helm release that name our images, and their values."""
        settings: dict[str, str] = {}
        for image in self.images.values():
            for key, form in image.helm.get(release, {}).items():
                value = {"ref": self.ref(image.name), "repository": self.repository(image.name), "tag": self.version}
                settings[key] = value[form]
        return settings

    def apply(self, release: str, values: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``values`` with this catalog's image names at the release's image keys."""
        settings = self.helm_settings(release)
        if not settings:
            return values
        result = copy.deepcopy(values)
        for dotted, value in settings.items():
            node = result
            *parents, leaf = dotted.split(".")
            for part in parents:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {} if child is None else child
                if not isinstance(child, dict):
                    raise ChimlError(f"values of {release}: {dotted} is not a mapping in the values file")
                node = child
            node[leaf] = value
        return result


def _str_dict(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ChimlError(f"{CATALOG.name}: {where} must be a mapping")
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def load_catalog(path: Path = CATALOG, registry: str | None = None) -> Catalog:
    """The image catalog; ``registry`` (or $CHIML_IMAGE_REGISTRY) replaces the file's registry."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ChimlError(f"{path}: cannot read the image catalog: {err}") from None
    root = path.resolve().parents[1]
    images: dict[str, Image] = {}
    for name, raw in (data.get("images") or {}).items():
        where = f"images.{name}"
        if not isinstance(raw, dict) or "dockerfile" not in raw or "context" not in raw:
            raise ChimlError(f"{path.name}: {where} needs dockerfile and context")
        helm = raw.get("helm") or {}
        for release, keys in helm.items():
            for key, form in (keys or {}).items():
                if form not in HELM_FORMS:
                    raise ChimlError(f"{path.name}: {where}.helm.{release}.{key}: {form!r} is not one of {HELM_FORMS}")
        variants = tuple(
            Variant(
                vname,
                _str_dict((v or {}).get("args"), f"{where}.variants.{vname}.args"),
                bool((v or {}).get("local", True)),
                tuple((v or {}).get("platforms") or ("linux/amd64",)),
            )
            for vname, v in (raw.get("variants") or {}).items()
        )
        images[name] = Image(
            name=name,
            dockerfile=root / raw["dockerfile"],
            context=root / raw["context"],
            target=raw.get("target"),
            args=_str_dict(raw.get("args"), f"{where}.args"),
            variants=variants,
            unbuildable=raw.get("unbuildable"),
            helm={release: dict(keys or {}) for release, keys in helm.items()},
            platforms=tuple(raw.get("platforms") or ("linux/amd64",)),
            contexts={key: root / value for key, value in _str_dict(raw.get("contexts"), f"{where}.contexts").items()},
        )
    chosen = registry or os.environ.get(REGISTRY_ENV) or data.get("registry")
    if not chosen:
        raise ChimlError(f"{path.name}: no registry (set `registry:` or ${REGISTRY_ENV})")
    base = (data.get("base") or {}).get("image")
    if not base:
        raise ChimlError(f"{path.name}: no base.image")
    return Catalog(registry=str(chosen).rstrip("/"), version=__version__, base_image=str(base), images=images)


def find_engine(preferred: str | None = None) -> str:
    """The container engine to build with: podman, buildah or docker, the first on PATH."""
    for engine in (preferred,) if preferred else ENGINES:
        if engine and shutil.which(engine):
            return engine
    wanted = preferred or " or ".join(ENGINES)
    raise ChimlError(f"no container engine: install {wanted} (scripts/images_setup.sh does, on Debian)")


# pip settings that name local paths, which the build must see at the same place.
_PIP_PATH_KEYS = ("find-links", "index-url", "extra-index-url", "cert", "constraint", "client-cert")


def host_pip_config() -> dict[str, str]:
    """The host pip's effective global settings (``pip config list``: files and PIP_* variables)."""
    pip = shutil.which("pip") or shutil.which("pip3")
    if pip is None:
        return {}
    result = subprocess.run([pip, "config", "list"], capture_output=True, text=True, check=False)
    settings: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.rpartition(".")[2]
        value = value.strip().strip("'\"")
        if name and value:
            settings[name] = value  # later lines (environment) win, as in pip
    return settings


def _local_paths(value: str) -> list[Path]:
    paths = []
    for item in value.split():
        parts = urlsplit(item)
        if parts.scheme == "file":
            path = Path(parts.path)
            # a PEP 503 index (<root>/simple) links its files relative to it: mount the root
            paths.append(path.parent if path.name == "simple" else path)
        elif not parts.scheme and item.startswith("/"):
            paths.append(Path(item))
    return paths


@contextmanager
def pip_mounts(settings: dict[str, str]) -> Iterator[list[str]]:
    """``-v`` options giving a build the host's pip configuration: a pip.conf with the host's
    settings, and every local path it names (wheel folders, file:// indexes, CA bundle) read-only."""
    if not settings:
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="chiml-pipconf-") as tmp:
        conf = Path(tmp, "pip.conf")
        lines = ["[global]"]
        mounts: set[Path] = set()
        for key, value in sorted(settings.items()):
            if key in {"disable-pip-version-check", "default-timeout", "retries", "timeout", *_PIP_PATH_KEYS}:
                lines.append(f"{key} = {value}")
            if key in _PIP_PATH_KEYS:
                mounts.update(p for p in _local_paths(value) if p.exists())
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        options = ["-v", f"{conf}:/etc/pip.conf:ro"]
        for path in sorted(mounts):
            options += ["-v", f"{path}:{path}:ro"]
        yield options


@dataclass
class Built:
    ref: str
    seconds: float
    size_bytes: int | None


def image_size(engine: str, ref: str) -> int | None:
    result = subprocess.run([engine, "image", "inspect", "--format", "{{.Size}}", ref],
                            capture_output=True, text=True, check=False)
    try:
        return int(result.stdout.strip().splitlines()[0])
    except (ValueError, IndexError):
        return None


def build_command(engine: str, catalog: Catalog, image: Image, variant: Variant | None,
                  extra: list[str], base_image: str | None = None, host_pip: bool = False) -> list[str]:
    args = {"BASE_IMAGE": base_image or catalog.base_image, **image.args, **(variant.args if variant else {})}
    if host_pip and "TORCH_INDEX_URL" in args and variant is None:
        # The host's pip configuration decides which torch wheel the build gets (on CI machines a
        # local folder with the CPU wheel); a test checks the image's torch has no CUDA.
        args["TORCH_INDEX_URL"] = ""
    verb = ["bud"] if engine == "buildah" else ["build"]
    tag = catalog.ref(image.name, variant.name if variant else None)
    command = [engine, *verb, "-f", str(image.dockerfile), "-t", tag]
    if engine != "docker":
        command += ["--layers"]
    if image.target:
        command += ["--target", image.target]
    for key, value in args.items():
        command += ["--build-arg", f"{key}={value}"]
    for key, path in image.contexts.items():
        command += ["--build-context", f"{key}={path}"]
    return [*command, *extra, str(image.context)]


def build(
    names: list[str] | None = None,
    *,
    catalog: Catalog | None = None,
    engine: str | None = None,
    offline: bool = False,
    variants: bool = False,
    base_image: str | None = None,
    progress: Progress = lambda _line: None,
) -> list[Built]:
    """Build images (all buildable ones by default), one at a time.

    ``offline``: no registry is reachable: never pull (the base must exist locally, see
    scripts/images_setup.sh) and give the build the host's pip configuration. ``variants``: also
    the variants that only releases build (e.g. the CUDA trainer).
    """
    catalog = catalog or load_catalog()
    engine = find_engine(engine)
    chosen = [catalog.get(n) for n in names] if names else list(catalog.images.values())
    built: list[Built] = []
    settings = host_pip_config() if offline else {}
    with pip_mounts(settings) as mounts:
        extra = (["--pull=never"] if offline and engine != "docker" else []) + mounts
        for image in chosen:
            if image.unbuildable:
                if names:
                    raise ChimlError(f"{image.name} cannot be built here: {image.unbuildable}")
                progress(f"skip {image.name}: cannot be built here: {image.unbuildable}")
                continue
            todo: list[Variant | None] = [None, *[v for v in image.variants if variants or v.local]]
            for variant in todo:
                ref = catalog.ref(image.name, variant.name if variant else None)
                command = build_command(engine, catalog, image, variant, extra, base_image, host_pip=offline)
                progress(f"build {ref}")
                started = time.monotonic()
                result = subprocess.run(command, capture_output=True, text=True, check=False)
                seconds = time.monotonic() - started
                if result.returncode != 0:
                    tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
                    raise ChimlError(f"building {ref} failed ({engine} exit {result.returncode}): {tail[0]}")
                size = image_size(engine, ref)
                built.append(Built(ref, seconds, size))
                progress(f"built {ref} in {seconds:.0f}s" + (f", {size / 1e6:.0f} MB" if size else ""))
    return built


def push(refs: list[str], *, engine: str | None = None, progress: Progress = lambda _line: None) -> dict[str, str]:
    """Push built images; returns each reference's pushed digest."""
    engine = find_engine(engine)
    engine_push = ["buildah", "push"] if engine == "buildah" else [engine, "push"]
    digests: dict[str, str] = {}
    for ref in refs:
        with tempfile.TemporaryDirectory(prefix="chiml-push-") as tmp:
            digest_file = Path(tmp, "digest")
            command = [*engine_push, ref]
            if engine != "docker":
                command[-1:-1] = ["--digestfile", str(digest_file)]
            progress(f"push {ref}")
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
                raise ChimlError(f"pushing {ref} failed: {tail[0]}")
            digests[ref] = digest_file.read_text().strip() if digest_file.exists() else ""
    return digests


def retag(refs: list[str], registry: str, catalog: Catalog, *, engine: str | None = None) -> list[str]:
    """Tag built images under another registry (``chiml images build --push REGISTRY``)."""
    engine = find_engine(engine)
    moved = []
    for ref in refs:
        new = registry.rstrip("/") + ref[len(catalog.registry):]
        if new != ref:
            result = subprocess.run([engine, "tag", ref, new], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise ChimlError(f"tagging {ref} as {new} failed: {result.stderr.strip()}")
        moved.append(new)
    return moved


def ssh_hosts(ssh_config: Path) -> list[str]:
    """The node names of an OpenSSH config chiml wrote for a deployment (``Host`` lines)."""
    try:
        text = ssh_config.read_text(encoding="utf-8")
    except OSError as err:
        raise ChimlError(f"{ssh_config}: no SSH config of a deployment ({err.strerror}); run `chiml up`") from None
    return [line.split()[1] for line in text.splitlines() if line.startswith("Host ") and len(line.split()) == 2]


def import_command(engine: str, refs: list[str], ssh_config: Path, host: str) -> str:
    """The shell pipeline that copies images into one k3s node's containerd, no registry needed."""
    multi = ["--multi-image-archive"] if engine == "podman" else []
    save = " ".join(shlex.quote(x) for x in [engine, "save", *multi, *refs])
    ssh = " ".join(shlex.quote(x) for x in ["ssh", "-F", str(ssh_config), host, "sudo k3s ctr images import -"])
    return f"set -o pipefail; {save} | {ssh}"


def import_to_nodes(refs: list[str], ssh_config: Path, *, hosts: list[str] | None = None, engine: str | None = None,
                    progress: Progress = lambda _line: None) -> None:
    """Copy images to every node of a Chameleon deployment and import them into k3s's containerd,
    over the SSH config chiml writes for the deployment (the server, and agents through it)."""
    if not refs:
        raise ChimlError("no images to copy")
    engine = find_engine(engine)
    for host in hosts or ssh_hosts(ssh_config):
        progress(f"import into {host}")
        result = subprocess.run(["bash", "-c", import_command(engine, refs, ssh_config, host)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ChimlError(f"importing images into {host} failed: {tail[0]}")
