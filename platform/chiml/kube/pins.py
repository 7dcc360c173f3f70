"""Check that every chart pin in helm/releases.yaml names a published release.

`make kube-pins` runs this against the real registries (it needs the network, so it is a make
target for CI, not a test): for each upstream release it pulls the pinned version with
`helm show chart` and compares the Chart.yaml it gets with the pin. A version that was never
published (a typo, or a number skipped by the upstream project) is reported, with the
registry's own error, before any `chiml up` meets it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chiml.errors import ChimlError, InvalidInputError, UnreachableError
from chiml.kube.helm import Helm, HelmError
from chiml.kube.releases import ReleaseSet, load_releases
from chiml.paths import repo_root

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


def check_pins(
    release_set: ReleaseSet, helm: Helm, progress: Callable[[str], None] | None = None
) -> list[PinCheck]:
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
        if progress is not None:
            progress(f"{release.name} {release.version}: {'published' if problem is None else problem}")
    return results


def require_published(release_set: ReleaseSet, helm: Helm, progress: Callable[[str], None] | None = None) -> int:
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


def main(argv: list[str]) -> int:
    """Entry point of `make kube-pins`: python -m chiml.kube.pins [HELM_DIR]."""
    root = repo_root()
    if not argv and root is None:
        print("error: give the helm/ directory (not running from a source checkout)", file=sys.stderr)
        return 2
    helm_dir = Path(argv[0]) if argv else root / "helm"  # type: ignore[operator]
    try:
        count = require_published(load_releases(helm_dir), Helm(), progress=print)
    except ChimlError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return 1
    print(f"all {count} upstream chart pins are published")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
