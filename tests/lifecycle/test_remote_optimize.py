"""`chiml optimize` on a cluster profile: one Job per runtime against the fake Kubernetes API, whose
kubelet runs the benchmark pods for real (chiml_serving's worker, as in the serving images), and a
real MLflow server as the exchange point between the laptop and the pods."""

from __future__ import annotations

from typing import Any

import pytest
from mlflow import MlflowClient

from chiml.images import load_catalog
from chiml.kube import incluster
from chiml.optimize import tracking
from chiml.optimize.bench import BenchSettings
from chiml.optimize.gate import Tolerance
from chiml.optimize.remote import optimize_on_cluster
from chiml.optimize.report import OK, UNAVAILABLE
from tests.kube.fake_kube import PodScript
from tests.kube.schemas import validate
from tests.optimize import models

from .conftest import LifecyclePlatform
from .kube_cluster import HELM, Cluster, on_the_laptop, service_routes

pytestmark = pytest.mark.e2e
FAST = BenchSettings(batches=(1, 8), budget_s=0.1)


@pytest.fixture(scope="module")
def registered(mlflow_uri: str) -> str:
    models.log_sklearn(mlflow_uri, "cluster-digits", models.sklearn_logreg())
    return "models:/cluster-digits@production"


def run(platform: LifecyclePlatform, cluster: Cluster, model_uri: str, target: str = "auto", **options: Any) -> Any:
    return optimize_on_cluster(platform, model_uri, target, settings=FAST, threads=options.pop("threads", 1),
                               tolerance=Tolerance(atol=1e-4, rtol=1e-3, min_top1=0.99), objective="latency",
                               allow_deepsparse=False, int8=False, sample=None, params={"target": target},
                               site=cluster.site, poll=0.2, **options)


def test_each_runtime_is_timed_in_its_serving_image_and_auto_decides(
    platform: LifecyclePlatform, registered: str
) -> None:
    cluster = Cluster(PodScript("process"), services=service_routes(platform.tracking_uri))
    steps: list[str] = []
    with on_the_laptop() as attempts:
        report = run(platform, cluster, registered, step=steps.append)
    assert attempts == []
    cluster.assert_nothing_left()
    rows = {row.name: row for row in report.rows}
    assert rows["onnxruntime"].status == OK and rows["onnxruntime"].p50_ms.keys() == {1, 8}
    # OpenVINO ran in its own pod too, and answered for itself (it has no rule for scikit-learn's
    # ONNX-ML classifier: rejected with the operator named, exactly as on the local profile)
    assert rows["openvino"].status == OK or "ai.onnx.ml" in rows["openvino"].reason
    assert report.chosen == min((r for r in report.rows if r.status == OK), key=lambda r: r.p50_ms[1]).name
    # TensorRT needs a GPU node: the scheduler's answer is the reason, not a guess made here
    assert rows["tensorrt"].status == UNAVAILABLE and "no node can run the pod" in rows["tensorrt"].reason
    assert rows["deepsparse"].status == UNAVAILABLE
    assert all(row.speedup is None for row in report.rows)  # the original was not timed on the cluster
    # the Jobs: the catalog's serving image per runtime, the serving pod's resources, schema-valid
    catalog = load_catalog()
    jobs = {j["metadata"]["name"].split("-")[1]: j for j in cluster.batch.created}
    for runtime in ("onnxruntime", "openvino", "tensorrt"):
        pod = jobs[runtime]["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == catalog.ref(f"serving-{runtime}")
        validate(jobs[runtime])
    gpu = jobs["tensorrt"]["spec"]["template"]["spec"]
    assert gpu["runtimeClassName"] == "nvidia" and gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    limits = incluster.serving_resources(HELM, "tensorrt")["limits"]
    assert gpu["containers"][0]["resources"]["limits"]["memory"] == limits["memory"]
    # recorded as on the local profile: one run with the artifacts, the pods' results, the choice
    client = MlflowClient(platform.tracking_uri)
    recorded = client.get_run(report.run_id)
    assert recorded.info.status == "FINISHED"
    assert recorded.data.tags[tracking.TAG_CHOSEN] == report.chosen
    assert recorded.data.params["where"] == "kubernetes:chiml"
    stored = {item.path for item in client.list_artifacts(report.run_id, f"runtimes/{report.chosen}")}
    assert f"runtimes/{report.chosen}/model.onnx" in stored
    assert {i.path for i in client.list_artifacts(report.run_id, "bench/onnxruntime")} == {
        "bench/onnxruntime/result.json", "bench/onnxruntime/outputs.npz"}
    version = client.get_model_version("cluster-digits", "1")
    assert version.tags[tracking.VERSION_TAG_CHOSEN] == report.chosen


def test_a_runtime_whose_image_cannot_be_pulled_is_unavailable_and_nothing_is_left(
    platform: LifecyclePlatform, registered: str
) -> None:
    cluster = Cluster(PodScript("image-pull"))
    report = run(platform, cluster, registered, target="onnxruntime")
    cluster.assert_nothing_left()
    (row,) = [r for r in report.rows if r.name == "onnxruntime"]
    assert row.status == UNAVAILABLE and "ErrImagePull" in row.reason
    assert report.chosen is None


def test_ctrl_c_deletes_every_job_and_the_half_logged_run(platform: LifecyclePlatform, registered: str) -> None:
    cluster = Cluster(PodScript("running"))
    seen: list[str] = []

    def interrupt(message: str) -> None:
        seen.append(message)
        if "pod Running" in message:
            raise KeyboardInterrupt

    before = {r.info.run_id for r in _optimize_runs(platform)}
    with pytest.raises(KeyboardInterrupt):
        run(platform, cluster, registered, step=interrupt)
    cluster.assert_nothing_left()
    after = [r for r in _optimize_runs(platform) if r.info.run_id not in before]
    assert after == []  # deleted: a failed optimization leaves the registry as it was


def test_dry_run_prints_one_job_per_runtime_without_contacting_anything(platform: LifecyclePlatform) -> None:
    from chiml.lifecycle.cluster import ClusterSite

    from .kube_cluster import NAMESPACE

    site = ClusterSite(api=None, namespace=NAMESPACE, mlflow_uri=incluster.mlflow_uri(HELM, NAMESPACE),
                       logs=incluster.tensorboard_logs(HELM, NAMESPACE),
                       optuna=incluster.optuna_database(HELM, NAMESPACE), helm_dir=HELM)

    class Unreachable:
        config = platform.config

        @property
        def tracking_uri(self) -> str:
            raise AssertionError("a dry run must not contact MLflow")

    objects = optimize_on_cluster(Unreachable(), "models:/x@production", "auto", settings=FAST, threads=None,
                                  tolerance=Tolerance(), objective="latency", allow_deepsparse=False, int8=False,
                                  sample=None, params={}, site=site, dry_run=True)
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Job") == 3 and kinds.count("ConfigMap") == 3  # onnxruntime, openvino, tensorrt
    for obj in objects:
        validate(obj)


def _optimize_runs(platform: LifecyclePlatform) -> list[Any]:
    client = MlflowClient(platform.tracking_uri)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    return [] if experiment is None else list(client.search_runs([experiment.experiment_id]))
