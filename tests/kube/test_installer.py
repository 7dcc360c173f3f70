"""The installer against a fake helm 4 process and fake Kubernetes API objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from chiml.errors import ChimlError
from chiml.kube.endpoints import KServeEndpoints
from chiml.kube.installer import describe_plan, install_platform, plan_platform, uninstall_platform
from chiml.kube.installer import helm_dir as release_dir
from chiml.kube.kubeapi import KubeApi
from chiml.kube.releases import load_releases
from chiml.state import StateStore

from .conftest import FakeHelm, make_cluster, make_loaded

# the releases `down` leaves installed (helm/releases.yaml `keep`): they hold data
KEPT = {"kserve-crd", "postgres", "cnpg"}


def flag_value(call: list[str], flag: str) -> str | None:
    return call[call.index(flag) + 1] if flag in call else None


def test_dry_run_plans_every_release_and_touches_nothing(loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi):
    result = install_platform(loaded, cluster, dry_run=True, api=kube_api, assume_gpu=True)
    section = describe_plan(plan_platform(loaded, cluster, gpu=True))
    text = "\n".join(["  ".join(row) for row in section.rows] + section.lines)
    releases = load_releases(loaded.config.kubernetes.helm_dir and Path(loaded.config.kubernetes.helm_dir))
    for release in releases:
        assert release.name in text and release.version in text and f"values/{release.values}" in text
    assert [r.action for r in result.results] == ["would-install"] * len(releases)
    assert fake_helm.calls == []  # no helm process at all
    assert kube_api.core.calls == [] and kube_api.custom.calls == []
    assert not (loaded.home / "state.json").exists()


def test_fresh_install_in_order_with_helm4_flags(loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi):
    progress: list[str] = []
    result = install_platform(loaded, cluster, api=kube_api, progress=progress.append)
    order = [r.name for r in load_releases(Path(loaded.config.kubernetes.helm_dir)) if r.when == "always"]
    n = len(order)
    assert f"[1/{n}] cert-manager v1.19.1: installing and waiting for readiness" in progress
    assert any(m.startswith(f"[{n}/{n}] chiml-runtimes 0.1.0: installed in") for m in progress)
    upgrades = fake_helm.upgrades()
    assert [c[1] for c in upgrades] == order  # releases.yaml order, no gpu-operator without GPUs
    assert [r.action for r in result.results] == ["installed"] * len(order)
    for call in upgrades:
        assert "--rollback-on-failure" in call and "--atomic" not in call  # helm 4's name for it
        assert "--wait" in call and "--install" in call and "--create-namespace" in call
        assert flag_value(call, "--values") == "-"  # values on stdin, never on disk
    by_name = {c[1]: c for c in upgrades}
    assert flag_value(by_name["mlflow"], "--repo") == "https://community-charts.github.io/helm-charts"
    assert flag_value(by_name["mlflow"], "--version") == "1.11.5"
    assert flag_value(by_name["kserve-crd"], "--version") == "v0.20.0"
    assert by_name["kserve-crd"][2] == "oci://ghcr.io/kserve/charts/kserve-crd"
    assert Path(by_name["tensorboard"][2]).is_dir() and "--version" not in by_name["tensorboard"]
    assert flag_value(by_name["mlflow"], "--namespace") == "chiml"
    assert flag_value(by_name["kserve-resources"], "--namespace") == "kserve"
    # placeholders were filled from the cluster description
    installed = fake_helm.installed()
    mlflow_values = installed["mlflow"]["values"]
    assert mlflow_values["ingress"]["hosts"][0]["host"] == "mlflow.203.0.113.7.nip.io"
    assert mlflow_values["extraEnvVars"]["MLFLOW_S3_ENDPOINT_URL"] == "http://seaweedfs-s3.chiml:8333"
    assert installed["postgres"]["values"]["cluster"]["storage"]["storageClass"] == "local-path"
    # credentials were generated into Secrets before the first release, not into values
    assert kube_api.core.calls.index("create_secret chiml/chiml-s3") < len(kube_api.core.calls)
    assert {name for (_, name) in kube_api.core.secrets} == {
        "chiml-s3", "chiml-ui-auth", "chiml-inference-auth", "chiml-pg-mlflow", "chiml-pg-optuna",
    }
    assert installed["postgres"]["values"]["cluster"]["roles"][0]["passwordSecret"]["name"] == "chiml-pg-optuna"
    ui = kube_api.read_secret("chiml", "chiml-ui-auth")
    assert ui["password"] not in json.dumps(fake_helm.state())
    state = StateStore(loaded.home).get("kubernetes")
    assert set(state["releases"]) == set(order) and state["ingress_domain"] == "203.0.113.7.nip.io"


def test_gpu_cluster_gets_the_gpu_operator(loaded, fake_helm: FakeHelm, kube_api: KubeApi):
    install_platform(loaded, make_cluster(gpu=True), api=kube_api)
    names = [c[1] for c in fake_helm.upgrades()]
    assert names.index("gpu-operator") == names.index("cert-manager") + 1
    values = fake_helm.installed()["gpu-operator"]["values"]
    assert values["driver"]["enabled"] is False and values["toolkit"]["enabled"] is False
    assert values["devicePlugin"]["enabled"] and values["dcgmExporter"]["enabled"]


def test_second_run_changes_nothing(loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi):
    install_platform(loaded, cluster, api=kube_api)
    fake_helm.clear_calls()
    result = install_platform(loaded, cluster, api=kube_api)
    assert fake_helm.upgrades() == []
    assert {r.action for r in result.results} == {"unchanged"}


def test_only_changed_releases_are_upgraded(loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi, helm_dir: Path):
    install_platform(loaded, cluster, api=kube_api)
    fake_helm.clear_calls()
    # 1. a value edited in a values file
    values = helm_dir / "values" / "tensorboard.yaml"
    doc = yaml.safe_load(values.read_text())
    doc["logdir"]["reloadInterval"] = 5
    values.write_text(yaml.safe_dump(doc))
    # 2. a chart version bumped in releases.yaml
    releases = helm_dir / "releases.yaml"
    releases.write_text(releases.read_text().replace("version: v1.19.1", "version: v1.19.2"))
    # 3. one of our chart's templates edited without a version bump
    notes = helm_dir / "charts" / "chiml-auth" / "templates" / "NOTES.txt"
    notes.write_text(notes.read_text() + "\n# edited\n")
    result = install_platform(loaded, cluster, api=kube_api)
    changed = {r.name: r.action for r in result.results if r.action != "unchanged"}
    assert changed == {"tensorboard": "upgraded", "cert-manager": "upgraded", "chiml-auth": "upgraded"}
    assert fake_helm.installed()["tensorboard"]["values"]["logdir"]["reloadInterval"] == 5
    assert fake_helm.installed()["cert-manager"]["chart_version"] == "v1.19.2"
    assert fake_helm.installed()["tensorboard"]["revision"] == 2


def test_values_changed_by_hand_are_put_back(loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi):
    install_platform(loaded, cluster, api=kube_api)
    doc = fake_helm.state()
    doc["releases"]["chiml/optuna-dashboard"]["values"]["replicaCount"] = 3  # `helm upgrade --set` by hand
    fake_helm.state_file.write_text(json.dumps(doc))
    fake_helm.clear_calls()
    result = install_platform(loaded, cluster, api=kube_api)
    assert [c[1] for c in fake_helm.upgrades()] == ["optuna-dashboard"]
    assert "replicaCount" not in fake_helm.installed()["optuna-dashboard"]["values"]
    assert "--reset-values" in fake_helm.upgrades()[0]
    assert [r.action for r in result.results if r.name == "optuna-dashboard"] == ["upgraded"]


def test_first_failure_stops_with_status_and_events(
    loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAKE_HELM_FAIL", "mlflow")
    # what the cluster would have recorded while helm waited for mlflow's pods
    later = datetime.now(UTC) + timedelta(seconds=30)
    kube_api.core.add_event("chiml", "Pod", "mlflow-7d9f-abcde", "Failed", 'Failed to pull image "bad"')
    kube_api.core.events["chiml"][-1].last_timestamp = later
    with pytest.raises(ChimlError) as caught:
        install_platform(loaded, cluster, api=kube_api)
    err = caught.value
    assert "release mlflow" in err.message and "context deadline exceeded" in err.message
    assert "\n" not in err.message
    assert "not installed (rolled back)" in err.hint and "Failed to pull image" in err.hint
    attempted = [c[1] for c in fake_helm.upgrades()]
    assert attempted[-1] == "mlflow" and "optuna-dashboard" not in attempted  # stopped at the failure
    assert "mlflow" not in fake_helm.installed()  # rolled back: nothing left behind
    recorded = StateStore(loaded.home).get("kubernetes")["releases"]
    assert "mlflow" not in recorded and "seaweedfs" in recorded
    # the next run resumes: what succeeded is unchanged, the rest is installed
    monkeypatch.delenv("FAKE_HELM_FAIL")
    fake_helm.clear_calls()
    result = install_platform(loaded, cluster, api=kube_api)
    actions = {r.name: r.action for r in result.results}
    assert actions["seaweedfs"] == "unchanged" and actions["mlflow"] == "installed"


def test_failed_upgrade_is_rolled_back_and_reported(
    loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi, helm_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    install_platform(loaded, cluster, api=kube_api)
    values = helm_dir / "values" / "optuna-dashboard.yaml"
    values.write_text(values.read_text() + "replicaCount: 2\n")
    monkeypatch.setenv("FAKE_HELM_FAIL", "optuna-dashboard")
    with pytest.raises(ChimlError) as caught:
        install_platform(loaded, cluster, api=kube_api)
    assert "UPGRADE FAILED" in caught.value.message and "rolled back" in caught.value.message
    assert "release status: deployed" in caught.value.hint  # helm's rollback left the old revision deployed
    assert "replicaCount" not in fake_helm.installed()["optuna-dashboard"]["values"]


def test_missing_chart_is_one_line(loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi, monkeypatch):
    monkeypatch.setenv("FAKE_HELM_MISSING_CHART", "oci://ghcr.io/kserve/charts/kserve-crd")
    with pytest.raises(ChimlError) as caught:
        install_platform(loaded, cluster, api=kube_api)
    assert "kserve-crd" in caught.value.message and "not found" in caught.value.message


def test_uninstall_in_reverse_order_and_resume(
    loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
):
    install_platform(loaded, cluster, api=kube_api)
    installed_order = [c[1] for c in fake_helm.upgrades()]
    fake_helm.clear_calls()
    monkeypatch.setenv("FAKE_HELM_FAIL_UNINSTALL", "seaweedfs")
    with pytest.raises(ChimlError, match="uninstall of seaweedfs failed"):
        uninstall_platform(loaded, cluster)
    first = [c[1] for c in fake_helm.calls if c[0] == "uninstall"]
    expected = [n for n in reversed(installed_order) if n not in KEPT]
    assert first == expected[: len(first)] and first[-1] == "seaweedfs"
    monkeypatch.delenv("FAKE_HELM_FAIL_UNINSTALL")
    removed = uninstall_platform(loaded, cluster)
    expected = [n for n in reversed(installed_order) if n not in KEPT]
    assert removed[0] == "seaweedfs" and removed == expected[expected.index("seaweedfs") :]
    assert set(fake_helm.installed()) == KEPT
    assert set(StateStore(loaded.home).get("kubernetes")["releases"]) == KEPT
    for call in fake_helm.calls:
        if call[0] == "uninstall":
            assert "--wait" in call
    # secrets outlive `down` (the data in the volumes depends on them)
    assert kube_api.read_secret("chiml", "chiml-s3") is not None


def test_skip_releases_and_unknown_placeholder(tmp_path, helm_dir, cluster, monkeypatch):
    loaded = make_loaded(tmp_path, helm_dir, monkeypatch, skip_releases=["cert-manager"])
    plan = plan_platform(loaded, cluster)
    assert "cert-manager" not in [p.name for p in plan.releases]
    assert ("cert-manager", "skipped in chiml.yaml") in plan.skipped
    (helm_dir / "values" / "tensorboard.yaml").write_text('ingress:\n  host: "tb.${ingres_domain}"\n')
    with pytest.raises(ChimlError, match=r"unknown placeholder \$\{ingres_domain\}"):
        plan_platform(loaded, cluster)


def test_wrong_helm_major_is_refused(loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi, tmp_path):
    old = tmp_path / "helm3"
    old.write_text('#!/bin/sh\necho -n "v3.17.0"\n')
    old.chmod(0o755)
    from chiml.kube.helm import Helm

    with pytest.raises(ChimlError, match="needs helm 4"):
        install_platform(loaded, cluster, api=kube_api, helm=Helm(executable=str(old)))


def test_down_keeps_the_releases_that_hold_data(loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi):
    """Uninstalling kserve-crd deletes every InferenceService, uninstalling postgres its volumes."""
    install_platform(loaded, cluster, api=kube_api)
    installed_order = [c[1] for c in fake_helm.upgrades()]
    fake_helm.clear_calls()
    progress: list[str] = []
    removed = uninstall_platform(loaded, cluster, progress=progress.append)
    uninstalled = [c[1] for c in fake_helm.calls if c[0] == "uninstall"]
    assert uninstalled == removed == [n for n in reversed(installed_order) if n not in KEPT]
    assert set(fake_helm.installed()) == KEPT
    assert all(r["status"] == "deployed" for r in fake_helm.installed().values())
    assert progress[-1] == "kept (they hold data): cnpg, kserve-crd, postgres"
    # still recorded as installed: the next `up` finds them unchanged and reinstalls the rest
    assert set(StateStore(loaded.home).get("kubernetes")["releases"]) == KEPT
    fake_helm.clear_calls()
    result = install_platform(loaded, cluster, api=kube_api)
    actions = {r.name: r.action for r in result.results}
    assert {n for n, a in actions.items() if a == "unchanged"} == KEPT
    assert [c[1] for c in fake_helm.upgrades()] == [n for n in installed_order if n not in KEPT]
    # a second `down` removes the same releases again, never the kept ones
    assert uninstall_platform(loaded, cluster) == removed
    assert uninstall_platform(loaded, cluster) == []


def api_server_after_uninstall(api: KubeApi, chart: str, release: str, namespace: str) -> None:
    """What the Kubernetes API server does to the data once helm has removed an upstream release,
    as the charts are at their pins. kserve-crd v0.20.0 renders its CRDs from templates/ without
    `helm.sh/resource-policy: keep`, and a deleted CRD takes every object of its kinds with it.
    The `cluster` chart's Cluster owns its PVCs (CloudNativePG 1.30 makes the Cluster their owner),
    so the garbage collector deletes them with it. SeaweedFS 4.44.0 claims its volumes through
    StatefulSet volumeClaimTemplates without a retention policy: Kubernetes keeps those claims."""
    if chart.endswith("/kserve-crd"):
        api.custom.delete_crd("serving.kserve.io")
    elif chart == "cluster":
        api.core.collect_garbage(namespace, ("Cluster", f"{release}-cluster"))


def test_down_leaves_every_inference_service_and_the_database_volumes(
    loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi
):
    """docs/kubernetes.md, "What `down` keeps": the endpoints and the PostgreSQL and SeaweedFS volumes."""
    install_platform(loaded, cluster, api=kube_api)
    releases = load_releases(release_dir(loaded))
    endpoints = KServeEndpoints(kube_api, "chiml", ingress_scheme="http", ingress_domain="203.0.113.7.nip.io")
    endpoints.deploy("s3://chiml-models/digits/1", "digits", runtime="onnxruntime", poll_s=0)
    postgres_claim = ("chiml", "postgres-cluster-1")  # the operator's claim for instance 1
    seaweedfs_claim = ("chiml", "data1-seaweedfs-volume-0")  # a StatefulSet's volumeClaimTemplates claim
    kube_api.core.add_claim(*postgres_claim, owner=("Cluster", "postgres-cluster"))
    kube_api.core.add_claim(*seaweedfs_claim)

    def down(include_kept: bool = False) -> None:
        for name in uninstall_platform(loaded, cluster, include_kept=include_kept):
            release = releases.get(name)
            api_server_after_uninstall(kube_api, release.chart, name, release.namespace_for("chiml"))

    down()
    assert [e.name for e in endpoints.list()] == ["digits"]
    assert set(kube_api.core.claims) == {postgres_claim, seaweedfs_claim}
    # what the kept releases protect: removing them too takes the endpoints and the database with them
    down(include_kept=True)
    assert not any(key[0] == "serving.kserve.io" for key in kube_api.custom.objects)
    assert set(kube_api.core.claims) == {seaweedfs_claim}


def test_down_keeps_what_was_marked_keep_even_if_releases_yaml_changed(
    loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi, helm_dir: Path
):
    install_platform(loaded, cluster, api=kube_api)
    releases = helm_dir / "releases.yaml"
    releases.write_text(releases.read_text().replace("    keep: true\n", ""))
    uninstall_platform(loaded, cluster)
    assert set(fake_helm.installed()) == KEPT  # the state recorded them as kept at install time


def test_down_including_kept_releases_removes_everything(loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi):
    install_platform(loaded, cluster, api=kube_api)
    installed_order = [c[1] for c in fake_helm.upgrades()]
    uninstall_platform(loaded, cluster)
    fake_helm.clear_calls()
    removed = uninstall_platform(loaded, cluster, include_kept=True)
    assert removed == [n for n in reversed(installed_order) if n in KEPT]  # still in reverse order
    assert fake_helm.installed() == {}
    assert StateStore(loaded.home).get("kubernetes")["releases"] == {}


def test_kserve_resources_is_retried_once(
    loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
):
    """KServe's controller can start before cert-manager issued its webhook certificate."""
    monkeypatch.setenv("FAKE_HELM_FAIL_ONCE", "kserve-resources")
    progress: list[str] = []
    result = install_platform(loaded, cluster, api=kube_api, progress=progress.append,
                              retry_delay_s=0)
    attempts = [c[1] for c in fake_helm.upgrades() if c[1] == "kserve-resources"]
    assert len(attempts) == 2
    assert any("kserve-resources v0.20.0: attempt 1 failed" in m and m.endswith("retrying") for m in progress)
    assert {r.name: r.action for r in result.results}["kserve-resources"] == "installed"
    assert fake_helm.installed()["kserve-resources"]["status"] == "deployed"


def test_a_persistent_failure_stops_after_the_retry(
    loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAKE_HELM_FAIL", "kserve-resources")
    with pytest.raises(ChimlError, match=r"release kserve-resources .* failed"):
        install_platform(loaded, cluster, api=kube_api, retry_delay_s=0)
    assert [c[1] for c in fake_helm.upgrades()].count("kserve-resources") == 2
    assert "kserve-resources" not in fake_helm.installed()  # rolled back, nothing left


def test_releases_without_retries_are_tried_once(
    loaded, cluster, fake_helm: FakeHelm, kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAKE_HELM_FAIL_ONCE", "mlflow")
    with pytest.raises(ChimlError, match="release mlflow"):
        install_platform(loaded, cluster, api=kube_api, retry_delay_s=0)
    assert [c[1] for c in fake_helm.upgrades()].count("mlflow") == 1
