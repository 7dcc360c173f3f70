"""helm/releases.yaml and the values files: every chart and image pinned, order consistent."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from chiml.errors import ChimlError
from chiml.kube.releases import PINNED_VERSION, load_releases

REPO = Path(__file__).resolve().parents[2]
HELM_DIR = REPO / "helm"
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MAJOR_ONLY = re.compile(r"^v?\d+$")


def images_in(node: Any, path: str = "") -> list[tuple[str, str]]:
    """(where, image reference) for every image a values tree sets (image: str or repository+tag)."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        if isinstance(node.get("repository"), str) and "tag" in node:
            found.append((path, f"{node['repository']}:{node['tag']}"))
        for key, value in node.items():
            if key in ("image", "imageName") and isinstance(value, str):
                found.append((f"{path}.{key}", value))
            else:
                found.extend(images_in(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found.extend(images_in(item, f"{path}[{i}]"))
    return found


def assert_pinned(where: str, image: str) -> None:
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{where}: image {image!r} has no tag"
    assert IMAGE_TAG.match(tag) and tag != "latest", f"{where}: image {image!r} is not pinned"
    # `16` or `v3` names whatever the newest release of that major is: it moves
    assert not MAJOR_ONLY.match(tag), f"{where}: image {image!r} has a major-only (moving) tag"


def test_every_release_is_pinned_and_ordered():
    releases = load_releases(HELM_DIR)
    names = [r.name for r in releases]
    assert len(names) == len(set(names))
    for release in releases:
        assert PINNED_VERSION.match(release.version), release.name
        for dep in release.depends_on:
            assert names.index(dep) < names.index(release.name)
    expected = {
        "cert-manager", "gpu-operator", "cnpg", "postgres", "seaweedfs", "mlflow", "optuna-dashboard",
        "tensorboard", "jupyterlab", "kserve-crd", "kserve-resources", "chiml-runtimes", "chiml-auth",
        "chiml-network-policies",
    }
    assert set(names) == expected
    assert releases.get("gpu-operator").when == "gpu"
    # KServe's charts come from one release
    assert releases.get("kserve-crd").version == releases.get("kserve-resources").version


def test_down_keeps_exactly_the_releases_that_hold_data():
    """The KServe CRDs (every InferenceService goes with them), the PostgreSQL cluster (the operator
    deletes its volumes with it) and that cluster's operator; nothing else is kept."""
    releases = load_releases(HELM_DIR)
    assert {r.name for r in releases if r.keep} == {"kserve-crd", "postgres", "cnpg"}
    # a kept release's dependencies are kept too, or the next `up` would reinstall under it
    for release in releases:
        if release.keep:
            assert all(releases.get(dep).keep for dep in release.depends_on), release.name
    # only KServe's controller is retried (its webhook-certificate race), once as KServe's installer does
    assert {r.name: r.retries for r in releases if r.retries} == {"kserve-resources": 1}


def test_every_image_in_values_and_charts_is_pinned():
    sources = list((HELM_DIR / "values").glob("*.yaml")) + list((HELM_DIR / "charts").glob("*/values.yaml"))
    checked = 0
    for path in sources:
        for where, image in images_in(yaml.safe_load(path.read_text()) or {}):
            assert_pinned(f"{path.relative_to(REPO)}:{where}", image)
            checked += 1
    assert checked >= 8  # our charts' images and the custom MLflow image are all in there
    # chart appVersions match the image tags they default to
    for chart in (HELM_DIR / "charts").iterdir():
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        assert PINNED_VERSION.match(str(meta["version"])), chart.name


def test_dockerfiles_pin_their_base_images():
    dockerfiles = [p for p in (REPO / "services").glob("*/Dockerfile") if p.parent.name != "serving"]
    assert {p.parent.name for p in dockerfiles} >= {"mlflow", "optuna-dashboard", "tensorboard"}
    for dockerfile in dockerfiles:
        # `FROM ${BASE_IMAGE}`: the base is a build argument whose default must be pinned
        args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", dockerfile.read_text(), re.M))
        for line in dockerfile.read_text().splitlines():
            if line.upper().startswith("FROM "):
                image = re.sub(r"\$\{(\w+)\}", lambda m, a=args: a.get(m.group(1), m.group(0)), line.split()[1])
                if image.lower() in {"builder", "build"}:
                    continue
                assert_pinned(str(dockerfile.relative_to(REPO)), image)
        text = dockerfile.read_text()
        assert re.search(r"^USER\s+\d+", text, re.M), f"{dockerfile}: no numeric non-root USER"
        requirements = dockerfile.parent / "requirements.txt"
        for req in requirements.read_text().splitlines():
            req = req.split("#")[0].strip()
            if req:
                assert re.match(r"^[A-Za-z0-9_.\[\],-]+==[^=\s]+$", req), f"{requirements}: {req!r} not pinned"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("version: v1.19.1", "version: ^1.19"), "not an exact version"),
        (lambda t: t.replace("version: 0.29.0", "version: latest"), "not an exact version"),
        (lambda t: t.replace("    retries: 1", "    retries: 9"), "retries"),
        (lambda t: t.replace("depends_on: [cnpg]", "depends_on: [mlflow]"), "must be listed before it"),
        (lambda t: t.replace("values: mlflow.yaml", "values: nope.yaml"), "does not exist"),
        (
            lambda t: t.replace("./charts/tensorboard\n    version: 0.1.0", "./charts/tensorboard\n    version: 0.2.0"),
            "but",
        ),
        (lambda t: t.replace("    repo: https://seaweedfs.github.io/seaweedfs/helm\n", ""), "needs an https:// repo"),
        (lambda t: t.replace("    when: gpu", "    when: sometimes"), "when"),
    ],
)
def test_release_file_errors_are_one_line(tmp_path: Path, edit, message: str):
    import shutil

    target = tmp_path / "helm"
    shutil.copytree(HELM_DIR, target)
    path = target / "releases.yaml"
    path.write_text(edit(path.read_text()))
    with pytest.raises(ChimlError) as caught:
        load_releases(target)
    assert message in caught.value.message and "\n" not in caught.value.message


def test_documented_config_section_is_valid():
    from chiml.config import parse_config

    doc = yaml.safe_load((REPO / "docs" / "kubernetes.example-section.yaml").read_text())
    cfg = parse_config(doc)
    assert cfg.kubernetes.namespace == "chiml" and cfg.kubernetes.skip_releases == []
    with pytest.raises(ChimlError, match="skip_release"):
        parse_config({"kubernetes": {"skip_release": ["cert-manager"]}})  # a typo is an error
    with pytest.raises(ChimlError, match="ingress_base_url"):
        parse_config({"kubernetes": {"ingress_base_url": "203.0.113.7.nip.io"}})
