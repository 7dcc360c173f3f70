"""services/images.yaml through chiml.images: names, the installer's values hook, build and
import commands (no container engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chiml import __version__, images
from chiml.errors import ChimlError

REPO = Path(__file__).resolve().parents[2]


def test_every_image_is_tagged_with_chimls_version_under_one_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(images.REGISTRY_ENV, raising=False)
    catalog = images.load_catalog()
    registry = yaml.safe_load(images.CATALOG.read_text())["registry"]
    assert catalog.ref("trainer") == f"{registry}/trainer:{__version__}"
    assert catalog.ref("trainer", "cuda") == f"{registry}/trainer:{__version__}-cuda"
    monkeypatch.setenv(images.REGISTRY_ENV, "registry.example:5000/me/")
    assert images.load_catalog().ref("mlflow") == f"registry.example:5000/me/mlflow:{__version__}"


def test_every_dockerfile_and_context_exists() -> None:
    for image in images.load_catalog().images.values():
        assert image.dockerfile.is_file(), image.name
        assert image.context.is_dir(), image.name
        if image.target:
            assert f" AS {image.target}\n" in image.dockerfile.read_text(), f"{image.name}: no stage {image.target}"


def test_apply_sets_the_image_keys_of_a_release_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(images.REGISTRY_ENV, "reg.test/x")
    catalog = images.load_catalog()
    values = {"image": {"repository": "old/mlflow", "tag": "1", "pullPolicy": "IfNotPresent"}, "workers": 2}
    applied = catalog.apply("mlflow", values)
    assert applied["image"] == {"repository": "reg.test/x/mlflow", "tag": __version__, "pullPolicy": "IfNotPresent"}
    assert applied["initImages"]["mlflowDbMigration"] == {"repository": "reg.test/x/mlflow", "tag": __version__}
    assert applied["workers"] == 2 and values["image"]["tag"] == "1"  # the input is not changed
    runtimes = catalog.apply("chiml-runtimes", {"runtimes": {"deepsparse": {"enabled": False}}})
    deepsparse = {"enabled": False, "image": f"reg.test/x/serving-deepsparse:{__version__}"}
    assert runtimes["runtimes"]["deepsparse"] == deepsparse
    assert runtimes["runtimes"]["onnxruntime"]["image"] == f"reg.test/x/serving-onnxruntime:{__version__}"
    assert catalog.apply("cert-manager", {"a": 1}) == {"a": 1}


def test_installer_plans_releases_with_the_catalogs_images(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from chiml.cluster import ClusterDescription, NodeInfo
    from chiml.config import load_config
    from chiml.kube import installer

    monkeypatch.setenv(images.REGISTRY_ENV, "reg.test/plan")
    monkeypatch.delenv("CHIML_HOME", raising=False)
    (tmp_path / "chiml.yaml").write_text(f"profile: kubernetes\nkubernetes:\n  helm_dir: {REPO / 'helm'}\n")
    loaded = load_config(tmp_path / "chiml.yaml")
    cluster = ClusterDescription(kubeconfig="/nonexistent/kubeconfig", api_endpoint="https://203.0.113.7:6443",
                                 kubernetes_version="v1.33.5+k3s1", nodes=[NodeInfo("node-0", gpu=False)])
    plan = installer.plan_platform(loaded, cluster)
    by_name = {p.release.name: p.values for p in plan.releases}
    assert by_name["mlflow"]["image"]["repository"] == "reg.test/plan/mlflow"
    assert by_name["mlflow"]["initImages"]["mlflowDbMigration"]["tag"] == __version__
    assert by_name["optuna-dashboard"]["image"]["repository"] == "reg.test/plan/optuna-dashboard"
    assert by_name["chiml-runtimes"]["runtimes"]["mlflow"]["image"] == f"reg.test/plan/serving-mlflow:{__version__}"


def test_bad_helm_form_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    path = tmp_path / "services" / "images.yaml"
    path.write_text("registry: r\nbase: {image: b}\nimages:\n"
                    "  x: {dockerfile: D, context: ., helm: {rel: {a.b: digest}}}\n")
    with pytest.raises(ChimlError, match=r"images\.x\.helm\.rel\.a\.b: 'digest' is not one of"):
        images.load_catalog(path)


def test_offline_build_uses_the_hosts_pip_config_and_never_pulls(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    index = tmp_path / "pypi" / "simple"
    index.mkdir(parents=True)
    wheels.mkdir()
    settings = {"find-links": str(wheels), "extra-index-url": f"file://{index}", "cert": "/nonexistent/ca.pem",
                "index-url": "https://pypi.org/simple"}
    with images.pip_mounts(settings) as mounts:
        conf = Path(mounts[1].split(":")[0])
        text = conf.read_text()
        assert f"find-links = {wheels}" in text and f"extra-index-url = file://{index}" in text
        assert mounts[1].endswith(":/etc/pip.conf:ro")
        assert f"{wheels}:{wheels}:ro" in mounts
        assert f"{index.parent}:{index.parent}:ro" in mounts  # the index root: its files are linked ../../files
        assert not any("nonexistent" in m for m in mounts)
    assert not conf.exists()
    catalog = images.load_catalog()
    command = images.build_command("podman", catalog, catalog.get("trainer"), None, ["--pull=never"], host_pip=True)
    assert "TORCH_INDEX_URL=" in command and "--pull=never" in command
    release = images.build_command("docker", catalog, catalog.get("trainer"), None, [])
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in release
    cuda = next(v for v in catalog.get("trainer").variants if v.name == "cuda")
    assert not cuda.local
    assert "TORCH_INDEX_URL=" in images.build_command("docker", catalog, catalog.get("trainer"), cuda, [])


def test_import_command_streams_into_k3s_containerd_over_the_deployment_ssh_config(tmp_path: Path) -> None:
    from chiml.chameleon.ssh import SSHTarget, render_ssh_config

    target = SSHTarget(user="cc", key_path=tmp_path / "key", jump_host="192.0.2.10", known_hosts=tmp_path / "kh")
    config = tmp_path / "ssh_config"
    config.write_text(render_ssh_config(target, "chiml-server", [{"name": "chiml-agent-0", "private_ip": "10.0.0.5"}]))
    assert images.ssh_hosts(config) == ["chiml-server", "chiml-agent-0"]
    command = images.import_command("podman", ["r/a:1", "r/b:1"], config, "chiml-agent-0")
    assert command == (f"set -o pipefail; podman save --multi-image-archive r/a:1 r/b:1 | "
                       f"ssh -F {config} chiml-agent-0 'sudo k3s ctr images import -'")
    with pytest.raises(ChimlError, match="run `chiml up`"):
        images.ssh_hosts(tmp_path / "missing")


def test_one_tag_is_selected_as_name_colon_variant_and_a_typo_is_one_line() -> None:
    catalog = images.load_catalog()
    with pytest.raises(ChimlError, match=r"trainer has no variant 'nope' \(its variants: classic, torch"):
        images.build(["trainer:nope"], catalog=catalog)
    with pytest.raises(ChimlError, match="no image 'nope'"):
        images.build(["nope:x"], catalog=catalog)


def test_trainer_variants_name_framework_groups_that_exist() -> None:
    """Every variant's FRAMEWORKS names group files (CPU, or their CUDA build), and JupyterLab's
    chart is given the notebooks variant and its CUDA build."""
    from chiml.frameworks import requirements_dir

    catalog = images.load_catalog()
    trainer = catalog.get("trainer")
    for variant in trainer.variants:
        args = {**trainer.args, **variant.args}
        for group in args["FRAMEWORKS"].replace(",", " ").split():
            assert (requirements_dir() / f"{group}.txt").is_file(), f"{variant.name}: no group {group}"
        assert args["ACCELERATOR"] in ("cpu", "cuda")
        assert (args["ACCELERATOR"] == "cuda") == variant.name.endswith("cuda"), variant.name
    settings = catalog.helm_settings("jupyterlab")
    assert settings["image.tag"] == f"{catalog.version}-notebooks"
    assert settings["gpu.image.tag"] == f"{catalog.version}-notebooks-cuda"
    assert settings["image.repository"] == catalog.repository("trainer")
