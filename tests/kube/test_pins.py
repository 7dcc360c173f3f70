"""The pin check of `make kube-pins`, against the fake helm (the real one needs the registries)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from chiml.errors import ChimlError
from chiml.kube.helm import Helm
from chiml.kube.pins import check_pins, require_published
from chiml.kube.releases import load_releases

from .conftest import FakeHelm

REPO = Path(__file__).resolve().parents[2]


def test_every_upstream_release_is_pulled_at_its_pin(helm_dir: Path, fake_helm: FakeHelm):
    releases = load_releases(helm_dir)
    progress: list[str] = []
    results = check_pins(releases, Helm(), progress.append)
    upstream = [r for r in releases if not r.is_local]
    assert [r.release for r in results] == [r.name for r in upstream] and all(r.ok for r in results)
    shows = [c for c in fake_helm.calls if c[:2] == ["show", "chart"]]
    for release, call in zip(upstream, shows, strict=True):
        assert call[2] == release.chart and call[call.index("--version") + 1] == release.version
        assert (call[call.index("--repo") + 1] if "--repo" in call else None) == release.repo
    assert progress[0] == f"{upstream[0].name} {upstream[0].version}: published"
    assert require_published(releases, Helm()) == len(upstream)


def test_an_unpublished_pin_is_named_with_the_registrys_error(
    helm_dir: Path, fake_helm: FakeHelm, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAKE_HELM_MISSING_CHART", "seaweedfs,oci://ghcr.io/kserve/charts/kserve-crd")
    releases = load_releases(helm_dir)
    bad = {r.release: r.problem for r in check_pins(releases, Helm()) if not r.ok}
    assert set(bad) == {"seaweedfs", "kserve-crd"}
    assert "version \"4.44.0\" not found" in bad["seaweedfs"] and "not found" in bad["kserve-crd"]
    with pytest.raises(ChimlError) as caught:
        require_published(releases, Helm())
    assert caught.value.message.startswith("2 chart pin(s)") and "\n" not in caught.value.message
    assert main([str(helm_dir)]) == 1


def main(argv: list[str]) -> int:
    """scripts/check_chart_pins.py's entry point (`make kube-pins`)."""
    spec = importlib.util.spec_from_file_location("check_chart_pins", REPO / "scripts" / "check_chart_pins.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(argv))


def test_main_reports_success(helm_dir: Path, fake_helm: FakeHelm, capsys: pytest.CaptureFixture[str]):
    assert main([str(helm_dir)]) == 0
    assert capsys.readouterr().out.strip().endswith("upstream chart pins are published")


def test_an_unreachable_registry_is_not_called_unpublished(helm_dir: Path, tmp_path: Path, monkeypatch):
    """What helm prints without a network (seen on a sandbox without DNS)."""
    offline = tmp_path / "helm-offline"
    offline.write_text(
        "#!/bin/sh\necho 'Error: looks like \"https://seaweedfs.github.io/seaweedfs/helm\" is not a valid chart "
        "repository or cannot be reached: Get \"https://seaweedfs.github.io/seaweedfs/helm/index.yaml\": dial tcp: "
        "lookup seaweedfs.github.io: no such host' >&2\nexit 1\n"
    )
    offline.chmod(0o755)
    releases = load_releases(helm_dir)
    results = check_pins(releases, Helm(executable=str(offline)))
    assert results and all(r.unreachable and not r.ok for r in results)
    with pytest.raises(ChimlError, match=r"could not check .* their registries did not answer"):
        require_published(releases, Helm(executable=str(offline)))
