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
