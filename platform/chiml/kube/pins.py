"""Check that every chart pin in helm/releases.yaml names a published release.

`make kube-pins` runs this against the real registries (it needs the network, so it is a make
target, not a test, and CI's machine cannot reach the chart registries): for each upstream
release it pulls the pinned version with `helm show chart` and compares the Chart.yaml it gets
with the pin. A version that was never
published (a typo, or a number skipped by the upstream project) is reported, with the
registry's own error, before any `chiml up` meets it.
"""

from __future__ import annotations

from dataclasses import dataclass

from chiml.errors import InvalidInputError, UnreachableError
from chiml.kube.helm import Helm, HelmError
from chiml.kube.releases import ReleaseSet
from chiml.progress import Progress, silent

# what helm says when it never got an answer (DNS, TCP, TLS): the pin is unchecked, not wrong
UNREACHABLE = ("cannot be reached", "dial tcp", "no such host", "connection refused", "i/o timeout", "TLS handshake")


@dataclass(frozen=True)
class PinCheck:
    release: str
    source: str
    version: str
    problem: str | None  # None: published, and its Chart.yaml says this version
    unreachable: bool = False  # the registry did not answer: neither confirmed nor refuted

    @property
    def ok(self) -> bool:
        return self.problem is None


def _same_version(pinned: str, published: str) -> bool:
    # OCI tags keep the chart's own spelling; helm repositories may drop a leading "v"
    return pinned.removeprefix("v") == published.removeprefix("v")


def check_pins(release_set: ReleaseSet, helm: Helm, progress: Progress = silent) -> list[PinCheck]:
    """One :class:`PinCheck` per upstream release (our local charts are checked by load_releases)."""
    results = []
    for release in release_set:
        if release.is_local:
            continue
        source = release.describe_source()
        try:
            meta = helm.chart_metadata(release.chart, version=release.version, repo=release.repo)
        except HelmError as err:
            problem: str | None = err.stderr or err.message
            unreachable = any(marker in (problem or "") for marker in UNREACHABLE)
        else:
            unreachable = False
            published = str((meta or {}).get("version", ""))
            problem = None if _same_version(release.version, published) else f"registry returned version {published!r}"
        results.append(PinCheck(release.name, source, release.version, problem, unreachable))
        progress(f"{release.name} {release.version}: {'published' if problem is None else problem}")
    return results


def require_published(release_set: ReleaseSet, helm: Helm, progress: Progress = silent) -> int:
    """Raise one ChimlError naming every pin that is not published (or, when none is known to be
    wrong, every one whose registry did not answer); else return the number checked."""
    results = check_pins(release_set, helm, progress)
    bad = [r for r in results if not r.ok and not r.unreachable]
    unchecked = [r for r in results if r.unreachable]
    if unchecked and not bad:
        names = ", ".join(r.release for r in unchecked)
        raise UnreachableError(
            f"could not check {len(unchecked)} chart pin(s), their registries did not answer: {names}",
            hint=f"this check needs the network; first error: {unchecked[0].problem}",
        )
    if bad:
        listed = "; ".join(f"{r.release} {r.version} ({r.source}): {r.problem}" for r in bad)
        raise InvalidInputError(
            f"{len(bad)} chart pin(s) in {release_set.helm_dir / 'releases.yaml'} are not published: {listed}",
            hint="pin a version the project's chart index or registry lists",
        )
    return len(results)
