"""Exposure on the cluster: the databases and the S3 store accept only the platform's own pods.

Rendered with the real helm from helm/releases.yaml and helm/values; the labels the policies
select are checked against what the rest of this repository uses for the same pods, so a
renamed release or cluster cannot leave a policy that selects nothing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from chiml.kube.releases import ReleaseSet, load_releases
from chiml.profiles import kubernetes as kube_profile

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / ".tools" / "bin" / "helm"
NAMESPACE = "chiml-test"


def releases() -> ReleaseSet:
    return load_releases(REPO / "helm")


@pytest.fixture(scope="module")
def policies() -> dict[str, dict]:
    if not HELM.exists():
        pytest.fail("helm is missing: run `make tools`")
    found = releases()
    release = found.get("chiml-network-policies")
    out = subprocess.run(
        [str(HELM), "template", release.name, str(found.chart_path(release)),
         "--namespace", NAMESPACE, "-f", str(found.values_path(release))],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert {d["kind"] for d in docs} == {"NetworkPolicy"}
    return {d["metadata"]["name"].removeprefix(f"{release.name}-"): d for d in docs}


def _selector(label_selector: str) -> dict[str, str]:
    key, _, value = label_selector.partition("=")
    return {key: value}


def test_postgres_policy_selects_the_cluster_the_profile_connects_to(policies: dict[str, dict]):
    spec = policies["postgres"]["spec"]
    # the same pods the kubernetes profile checks for readiness (its status table)
    row = next(r for r in kube_profile.SERVICES if r[0] == "postgresql")
    assert spec["podSelector"]["matchLabels"] == _selector(row[3])
    assert spec["policyTypes"] == ["Ingress"]
    same_namespace, operator = spec["ingress"]
    assert same_namespace == {"from": [{"podSelector": {}}]}  # no namespaceSelector: this namespace only
    cnpg = next(r for r in releases() if r.name == "cnpg")
    peer = operator["from"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": cnpg.namespace}
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": cnpg.chart}
    assert sorted(p["port"] for p in operator["ports"]) == [5432, 8000]


def test_s3_store_policy_selects_every_seaweedfs_pod(policies: dict[str, dict]):
    spec = policies["seaweedfs"]["spec"]
    seaweedfs = next(r for r in releases() if r.name == "seaweedfs")
    # SeaweedFS's chart labels each component app.kubernetes.io/name=<chart name>
    assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": seaweedfs.chart}
    assert spec["ingress"] == [{"from": [{"podSelector": {}}]}]


def test_policies_install_after_the_stores_they_guard():
    names = [r.name for r in releases()]
    release = next(r for r in releases() if r.name == "chiml-network-policies")
    assert set(release.depends_on) == {"postgres", "seaweedfs"}
    assert names.index("chiml-network-policies") > max(names.index("postgres"), names.index("seaweedfs"))


# ----------------------------------------------------------------- logins and pod hardening
def _rendered_charts(tmp_path: Path) -> dict[str, list[dict]]:
    """Every chart of ours, rendered by the real helm with chiml's values file for it."""
    from tests.kube.test_charts import CHARTS, helm_binary, render, values_file_for

    helm = helm_binary()
    return {chart: render(helm, chart, values_file_for(chart, tmp_path)) for chart in CHARTS}


def _auth() -> dict[str, dict[str, str]]:
    """helm/values/chiml-auth.yaml: the Traefik middlewares (and their Secrets) of the two logins."""
    return yaml.safe_load((REPO / "helm" / "values" / "chiml-auth.yaml").read_text())


def _middleware(namespace: str, login: str) -> str:
    return f"{namespace}-{_auth()[login]['middleware']}@kubernetescrd"


def test_every_ui_and_endpoint_asks_for_a_login(tmp_path: Path):
    """Each way in from outside (an Ingress of a UI, an InferenceService's route) goes through the
    basic-auth middleware that chiml-auth defines, and nothing is published past the ingress."""
    from chiml.kube.endpoints import KServeEndpoints
    from chiml.kube.kubeapi import KubeApi
    from tests.kube.fake_kube import FakeCoreV1Api, FakeCustomObjectsApi

    rendered = _rendered_charts(tmp_path)
    middlewares = {d["metadata"]["name"]: d["spec"]["basicAuth"] for d in rendered["chiml-auth"]}
    for login, settings in _auth().items():
        assert middlewares[settings["middleware"]]["secret"] == settings["secret"], login
    ingresses = [d for docs in rendered.values() for d in docs if d["kind"] == "Ingress"]
    # our charts' UIs: each behind the UI login (JupyterLab also asks for its own token)
    assert sorted(i["metadata"]["name"] for i in ingresses) == ["jupyterlab", "optuna-dashboard", "tensorboard"]
    for ingress in ingresses:
        annotations = ingress["metadata"].get("annotations") or {}
        assert annotations.get("traefik.ingress.kubernetes.io/router.middlewares") == _middleware("chiml", "ui"), (
            ingress["metadata"]["name"])
    services = [d for docs in rendered.values() for d in docs if d["kind"] == "Service"]
    assert services and all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)
    # upstream charts: every values file that turns an ingress on puts the login in front of it
    for path in sorted((REPO / "helm" / "values").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        ingress = doc.get("ingress") or {}
        if ingress.get("enabled"):
            routed = (ingress.get("annotations") or {}).get("traefik.ingress.kubernetes.io/router.middlewares")
            assert routed or ingress.get("middlewares"), f"{path.name}: an ingress without a login"
            assert (routed or ingress["middlewares"][0]).replace("${namespace}", "chiml") == _middleware("chiml", "ui")
        assert (doc.get("service") or {}).get("type", "ClusterIP") == "ClusterIP", path.name
    # the endpoints: every InferenceService chiml builds routes through the inference login
    backend = KServeEndpoints(KubeApi(core=FakeCoreV1Api(), custom=FakeCustomObjectsApi()), "chiml",
                              ingress_scheme="http", ingress_domain="203.0.113.7.nip.io")
    body = backend.build("s3://chiml-models/digits/1", "digits", "onnxruntime", 1, 1)
    annotations = body["metadata"]["annotations"]
    assert annotations["traefik.ingress.kubernetes.io/router.middlewares"] == _middleware("chiml", "inference")


def test_every_pod_runs_as_non_root_on_a_read_only_root(tmp_path: Path):
    """Our images need no writable root (they write to mounted volumes only): every container of
    our charts, and the MLflow server the upstream chart runs from our image, says so."""
    checked = 0
    for chart, docs in _rendered_charts(tmp_path).items():
        for doc in docs:
            spec = (doc["spec"]["template"]["spec"] if doc["kind"] in ("Deployment", "StatefulSet", "Job")
                    else doc["spec"] if doc["kind"] == "ClusterServingRuntime" else None)
            if spec is None:
                continue
            for container in spec.get("initContainers", []) + spec["containers"]:
                context = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
                where = f"{chart}: {doc['kind']}/{doc['metadata']['name']}/{container['name']}"
                assert context.get("runAsNonRoot") is True and context.get("runAsUser", 0) > 0, where
                assert context.get("readOnlyRootFilesystem") is True, where
                checked += 1
    assert checked >= 4  # optuna-dashboard, tensorboard and the serving runtimes
    mlflow = yaml.safe_load((REPO / "helm" / "values" / "mlflow.yaml").read_text())
    assert mlflow["securityContext"]["readOnlyRootFilesystem"] is True
    assert mlflow["securityContext"]["runAsNonRoot"] is True and mlflow["podSecurityContext"]["runAsNonRoot"] is True
