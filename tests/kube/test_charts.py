"""Our charts, rendered by the real helm (make tools) and validated offline.

For every chart under helm/charts, with its default values and with chiml's values file from
helm/values: `helm lint --strict`, `helm template`, every manifest validated against the
Kubernetes 1.35 schemas (kubernetes-validate) or, for CRD kinds, the CRDs' schemas
(tests/kube/schemas.py), policy checks on every pod (resources, probes, non-root, pinned
images), and checkov over all rendered manifests with helm/.checkov.yaml's justified skips.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chiml.cluster import ClusterDescription
from chiml.kube.releases import load_releases
from chiml.kube.values import RenderContext, load_values
from chiml.tools import ToolError, find_tool

from .schemas import validate

REPO = Path(__file__).resolve().parents[2]
HELM_DIR = REPO / "helm"
CHARTS = sorted(p.name for p in (HELM_DIR / "charts").iterdir() if (p / "Chart.yaml").is_file())
CONTEXT = RenderContext.for_cluster(
    ClusterDescription("k", "https://203.0.113.7:6443", "v1.35.0", ingress_base_url="http://203.0.113.7.nip.io"),
    "chiml",
)


def helm_binary() -> str:
    try:
        path = find_tool("helm")
    except ToolError:
        pytest.skip("helm not installed: run `make tools`")
    version = subprocess.run([path, "version", "--template", "{{.Version}}"], capture_output=True, text=True)
    if not version.stdout.startswith("v4."):
        pytest.skip(f"{path} is not helm 4 ({version.stdout.strip()}): run `make tools`")
    return path


def values_file_for(chart: str, tmp_path: Path) -> Path | None:
    """chiml's values file for the release that uses this chart, placeholders filled."""
    for release in load_releases(HELM_DIR):
        if release.is_local and Path(release.chart).name == chart:
            out = tmp_path / f"{chart}-values.yaml"
            out.write_text(yaml.safe_dump(load_values(HELM_DIR / "values" / release.values, CONTEXT)))
            return out
    return None


def render(helm: str, chart: str, values: Path | None, *extra: str) -> list[dict[str, Any]]:
    cmd = [helm, "template", chart, str(HELM_DIR / "charts" / chart), "--namespace", "chiml", *extra]
    if values is not None:
        cmd += ["--values", str(values)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if doc["kind"] == "ClusterServingRuntime":
        return doc["spec"]
    return None


def check_pod_policy(doc: dict[str, Any]) -> None:
    spec = pod_spec(doc)
    if spec is None:
        return
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    pod_sc = spec.get("securityContext", {})
    for c in spec["containers"]:
        sc = {**pod_sc, **c.get("securityContext", {})}
        assert sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) > 0, f"{where}: {c['name']} may run as root"
        assert sc.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation allowed"
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities not dropped"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c.get("resources", {}).get(kind, {})), f"{where}: no {kind}"
        assert "readinessProbe" in c and "livenessProbe" in c, f"{where}: {c['name']} lacks probes"
        image = c["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{where}: unpinned {image}"


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


@pytest.mark.parametrize("chart", CHARTS)
def test_chart_lints_renders_and_validates(helm: str, chart: str, tmp_path: Path):
    chart_dir = HELM_DIR / "charts" / chart
    for required in ("values.schema.json", "templates/NOTES.txt", "values.yaml"):
        assert (chart_dir / required).is_file(), f"{chart} lacks {required}"
    values = values_file_for(chart, tmp_path)
    for variant in (None, values):
        args = [helm, "lint", "--strict", str(chart_dir)] + (["--values", str(variant)] if variant else [])
        lint = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        docs = render(helm, chart, variant)
        assert docs, f"{chart} renders nothing"
        for doc in docs:
            validate(doc)
            check_pod_policy(doc)


def test_values_files_enable_ingress_with_auth(helm: str, tmp_path: Path):
    """The UIs chiml installs are reachable only through the basic-auth middleware."""
    for chart in ("optuna-dashboard", "tensorboard", "jupyterlab"):
        docs = render(helm, chart, values_file_for(chart, tmp_path))
        ingresses = [d for d in docs if d["kind"] == "Ingress"]
        assert len(ingresses) == 1, chart
        annotations = ingresses[0]["metadata"]["annotations"]
        assert annotations["traefik.ingress.kubernetes.io/router.middlewares"] == "chiml-chiml-ui-auth@kubernetescrd"
        assert ingresses[0]["spec"]["rules"][0]["host"].endswith(".203.0.113.7.nip.io")
    auth = render(helm, "chiml-auth", values_file_for("chiml-auth", tmp_path))
    assert {d["metadata"]["name"] for d in auth} == {"chiml-ui-auth", "chiml-inference-auth"}


def test_schema_rejects_a_typo_and_an_unpinned_image(helm: str):
    chart = str(HELM_DIR / "charts" / "tensorboard")
    typo = subprocess.run(
        [helm, "template", "t", chart, "--set", "ingres.enabled=true"], capture_output=True, text=True
    )
    assert typo.returncode != 0 and "ingres" in typo.stderr
    latest = subprocess.run(
        [helm, "template", "t", str(HELM_DIR / "charts" / "chiml-runtimes"),
         "--set", "runtimes.mlflow.image=ghcr.io/chiml-project/serving-mlflow:latest"],
        capture_output=True, text=True,
    )
    assert latest.returncode != 0 and "image" in latest.stderr


def test_runtimes_cover_every_endpoint_runtime(helm: str, tmp_path: Path):
    from chiml.kube.endpoints import RUNTIMES

    docs = render(helm, "chiml-runtimes", values_file_for("chiml-runtimes", tmp_path))
    runtimes = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterServingRuntime"}
    for runtime, (model_format, name) in RUNTIMES.items():
        assert name in runtimes, f"the endpoint backend uses {name}, the chart does not define it"
        formats = [f["name"] for f in runtimes[name]["spec"]["supportedModelFormats"]]
        assert model_format in formats, f"{name} does not serve format {model_format} ({runtime})"
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert sa["metadata"]["name"] == "chiml-models" and sa["secrets"] == [{"name": "chiml-s3"}]


def test_the_runtimes_schema_names_every_runtime_of_the_contract():
    """values.schema.json cannot import Python: its enum of runtimes (those chiml_serving serves)
    plus the one the chart serves with Triton must be the contract's runtimes, no more, no less."""
    import re

    from chiml_contract.runtimes import RUNTIMES

    chart = HELM_DIR / "charts" / "chiml-runtimes"
    schema = json.loads((chart / "values.schema.json").read_text(encoding="utf-8"))
    enum = schema["properties"]["runtimes"]["propertyNames"]["enum"]
    template = (chart / "templates" / "clusterservingruntimes.yaml").read_text(encoding="utf-8")
    triton_block = template[template.index(".Values.triton.enabled"):]
    triton = re.findall(r"^  name: chiml-([\w-]+)$", triton_block, re.M)
    assert len(enum) == len(set(enum)) and triton, (enum, triton)
    assert sorted([*enum, *triton]) == sorted(RUNTIMES)
    defaults = yaml.safe_load((chart / "values.yaml").read_text(encoding="utf-8"))
    assert set(defaults["runtimes"]) == set(enum)


def checkov_executable() -> Path:
    """checkov from its own venv, created here if missing: the test must not depend on `make lint`
    (or any other test) having run first. The script is idempotent and prints the executable."""
    proc = subprocess.run(["bash", str(REPO / "scripts" / "checkov_venv.sh")], capture_output=True, text=True,
                          timeout=1200)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        pytest.fail(f"cannot create the checkov venv (scripts/checkov_venv.sh): {last}")
    return Path(proc.stdout.strip().splitlines()[-1])


def test_checkov_passes_on_rendered_charts(helm: str, tmp_path: Path):
    checkov = checkov_executable()
    out_dir = tmp_path / "rendered"
    out_dir.mkdir()
    for chart in CHARTS:
        for variant, values in (("default", None), ("chiml", values_file_for(chart, tmp_path))):
            docs = render(helm, chart, values)
            (out_dir / f"{chart}-{variant}.yaml").write_text(yaml.safe_dump_all(docs))
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    proc = subprocess.run(
        [str(checkov), "-d", str(out_dir), "--config-file", str(HELM_DIR / ".checkov.yaml"),
         "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for r in reports for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert not failed, "checkov failures:\n" + "\n".join(failed)
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed > 100  # it really ran the Kubernetes checks
