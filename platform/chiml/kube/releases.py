"""helm/releases.yaml: the ordered list of the platform's Helm releases, validated.

Validation happens before anything touches a cluster, so a typo in the file is one line of error
at `chiml up --dry-run` time, not a half-installed platform.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chiml.errors import InvalidInputError

# An exact chart version: semver with an optional leading v, no ranges, no wildcards.
PINNED_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Release(BaseModel):
    """One Helm release."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(max_length=53)  # Helm's own limit on release names
    chart: str
    repo: str | None = None
    version: str
    namespace: str
    values: str
    depends_on: tuple[str, ...] = ()
    when: Literal["always", "gpu"] = "always"
    timeout: str = Field("5m", pattern=r"^\d+[smh]$")
    # extra attempts after a failed install/upgrade, for a chart with a known start-up race
    retries: int = Field(0, ge=0, le=3)
    # left installed by `down`: uninstalling it would destroy data (CRDs, database volumes)
    keep: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("must be a DNS label (lowercase letters, digits, '-')")
        return value

    @field_validator("version")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if not PINNED_VERSION.match(value):
            raise ValueError(f"{value!r} is not an exact version (pin e.g. 1.2.3, never a range or 'latest')")
        return value

    @model_validator(mode="after")
    def _chart_source(self) -> Release:
        if self.is_local:
            if self.repo:
                raise ValueError("a local chart (./charts/...) takes no repo")
        elif self.chart.startswith("oci://"):
            if self.repo:
                raise ValueError("an oci:// chart takes no repo")
        elif not self.repo or not self.repo.startswith("https://"):
            raise ValueError("a repository chart needs an https:// repo")
        return self

    @property
    def is_local(self) -> bool:
        return self.chart.startswith("./")

    def namespace_for(self, platform_namespace: str) -> str:
        return self.namespace.replace("${namespace}", platform_namespace)

    def timeout_seconds(self, scale: float = 1.0) -> int:
        unit = {"s": 1, "m": 60, "h": 3600}[self.timeout[-1]]
        return max(1, round(int(self.timeout[:-1]) * unit * scale))

    def describe_source(self) -> str:
        return f"{self.repo}/{self.chart}" if self.repo else self.chart


class ReleaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    releases: list[Release]


class ReleaseSet:
    """The validated release list plus where its values files and local charts live."""

    def __init__(self, helm_dir: Path, releases: list[Release]) -> None:
        self.helm_dir = helm_dir
        self.releases = releases

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.releases)

    def __len__(self) -> int:
        return len(self.releases)

    def get(self, name: str) -> Release:
        for release in self.releases:
            if release.name == name:
                return release
        raise KeyError(name)

    def values_path(self, release: Release) -> Path:
        return self.helm_dir / "values" / release.values

    def chart_path(self, release: Release) -> Path:
        return (self.helm_dir / release.chart).resolve()

    def applicable(self, has_gpu: bool, skip: list[str] | tuple[str, ...] = ()) -> list[Release]:
        """The releases to install on a cluster, in order."""
        return [r for r in self.releases if (r.when == "always" or has_gpu) and r.name not in skip]

    def chart_digest(self, release: Release) -> str | None:
        """sha256 over a local chart's files: a template edit without a version bump still counts as a change."""
        if not release.is_local:
            return None
        root = self.chart_path(release)
        digest = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
        return digest.hexdigest()


def load_releases(helm_dir: Path) -> ReleaseSet:
    """Read and check helm/releases.yaml (names, pins, order of dependencies, files present)."""
    path = helm_dir / "releases.yaml"
    if not path.is_file():
        raise InvalidInputError(f"release list not found: {path}", hint="set kubernetes.helm_dir in chiml.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        parsed = ReleaseFile.model_validate(data)
    except yaml.YAMLError as err:
        raise InvalidInputError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(f"{path}: {where}: {first['msg']}") from None
    releases = parsed.releases
    seen: set[str] = set()
    for release in releases:
        if release.name in seen:
            raise InvalidInputError(f"{path}: release {release.name!r} is listed twice")
        for dep in release.depends_on:
            if dep not in seen:
                raise InvalidInputError(
                    f"{path}: release {release.name!r} depends on {dep!r}, which must be listed before it"
                )
        seen.add(release.name)
    result = ReleaseSet(helm_dir, releases)
    for release in releases:
        values = result.values_path(release)
        if not values.is_file():
            raise InvalidInputError(f"{path}: release {release.name!r}: values file {values} does not exist")
        if release.is_local:
            chart_yaml = result.chart_path(release) / "Chart.yaml"
            if not chart_yaml.is_file():
                raise InvalidInputError(f"{path}: release {release.name!r}: no chart at {chart_yaml.parent}")
            declared = str(yaml.safe_load(chart_yaml.read_text(encoding="utf-8")).get("version"))
            if declared != release.version:
                raise InvalidInputError(
                    f"{path}: release {release.name!r} pins {release.version} but {chart_yaml} is {declared}"
                )
    return result
