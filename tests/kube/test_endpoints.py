"""KServe endpoint backend against fake Kubernetes API objects (with a simulated KServe controller)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chiml.errors import ChimlError, InvalidInputError, NotFoundError, NotSupportedError
from chiml.kube.endpoints import KServeEndpoints
from chiml.kube.kubeapi import KubeApi
from chiml.kube.secrets import ensure_platform_secrets
from chiml.kube.values import RenderContext

from .fake_kube import ControllerSimulatingCustomApi, FakeCoreV1Api, cluster_context, kserve_url

REPO = Path(__file__).resolve().parents[2]


def backend(
    ready_after: int = 2, fail: set[str] | None = None, context: RenderContext | None = None, **kw
) -> KServeEndpoints:
    """The endpoint backend as the profile builds it: scheme and domain recorded from the cluster."""
    context = context or cluster_context()
    custom = ControllerSimulatingCustomApi(ready_after=ready_after, fail=fail, context=context)
    api = KubeApi(core=FakeCoreV1Api(), custom=custom)
    return KServeEndpoints(
        api, context.namespace, ingress_scheme=context.ingress_scheme, ingress_domain=context.ingress_domain, **kw
    )


def mlflow_artifact_root() -> str:
    """Where the MLflow server stores proxied artifacts, as helm/values/mlflow.yaml configures it."""
    s3 = yaml.safe_load((REPO / "helm" / "values" / "mlflow.yaml").read_text())["artifactRoot"]["s3"]
    return f"s3://{s3['bucket']}/{s3['path']}"


def test_deploy_creates_an_inference_service_and_waits_for_ready():
    eps = backend(ready_after=3)
    endpoint = eps.deploy("s3://chiml-models/digits/1", "digits", runtime="onnxruntime", replicas=2, workers=3,
                          poll_s=0.01)
    assert endpoint.status == "ready" and endpoint.url == "http://digits-chiml.203.0.113.7.nip.io"
    assert endpoint.workers == 3 and endpoint.replicas == 2 and endpoint.urls == [endpoint.url]
    obj = eps.api.get_isvc("chiml", "digits")
    predictor = obj["spec"]["predictor"]
    assert predictor["model"] == {
        "modelFormat": {"name": "onnx"}, "runtime": "chiml-onnxruntime", "protocolVersion": "v2",
        "storageUri": "s3://chiml-models/digits/1", "args": ["--workers=3"],
    }
    assert predictor["minReplicas"] == 2 and predictor["serviceAccountName"] == "chiml-models"
    annotations = obj["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Standard"
    assert annotations["traefik.ingress.kubernetes.io/router.middlewares"] == "chiml-chiml-inference-auth@kubernetescrd"
    assert [e.name for e in eps.list()] == ["digits"]


def test_defaults_mlflow_uris_and_tensorrt():
    eps = backend(default_runtime="mlflow", default_replicas=1, default_workers=2)
    body = eps.build("mlflow-artifacts:/1/abc/artifacts/model", "m1", None, None, None)
    root = mlflow_artifact_root()
    assert body["spec"]["predictor"]["model"]["storageUri"] == f"{root}/1/abc/artifacts/model"
    assert body["spec"]["predictor"]["model"]["runtime"] == "chiml-mlflow"
    trt = eps.build("s3://chiml-models/engine", "trt", "tensorrt", 1, 1)["spec"]["predictor"]
    assert trt["runtimeClassName"] == "nvidia" and "args" not in trt["model"]
    with pytest.raises(ChimlError, match="cannot resolve models:/"):
        eps.build("models:/digits/1", "m2", None, None, None)
    resolving = backend(resolve_uri=lambda uri: "mlflow-artifacts:/5/r1/artifacts/model")
    assert resolving.storage_uri("models:/digits/1") == f"{root}/5/r1/artifacts/model"
    with pytest.raises(ChimlError, match="cannot be served from a cluster"):
        eps.build("/home/me/model", "m3", None, None, None)
    with pytest.raises(ChimlError, match="invalid endpoint name"):
        eps.build("s3://b/m", "Bad_Name", None, None, None)
    with pytest.raises(ChimlError, match="invalid endpoint name"):
        eps.build("s3://b/m", "x" * 41, None, None, None)  # the local backend's 40-character rule
    with pytest.raises(ChimlError, match="unknown runtime"):
        eps.build("s3://b/m", "ok", "tensorflow", None, None)


def test_scale_redeploy_delete():
    eps = backend(ready_after=1)
    eps.deploy("s3://chiml-models/a", "a", runtime="openvino", poll_s=0.01)
    assert eps.scale("a", 3).replicas == 3
    with pytest.raises(ChimlError, match="replicas must be between 1 and 64"):
        eps.scale("a", 0)  # Standard mode does not scale to zero
    assert eps.api.get_isvc("chiml", "a")["spec"]["predictor"]["maxReplicas"] == 3
    # redeploying under the same name updates the model in place (a new generation), keeping the replicas
    again = eps.deploy("s3://chiml-models/b", "a", runtime="openvino", poll_s=0.01)
    assert again.model_uri == "s3://chiml-models/b" and eps.api.get_isvc("chiml", "a")["metadata"]["generation"] == 3
    assert again.replicas == 3
    eps.delete("a")
    assert eps.list() == []
    with pytest.raises(ChimlError, match="no endpoint named 'a'"):
        eps.delete("a")
    with pytest.raises(ChimlError, match="no endpoint named"):
        eps.scale("a", 1)


def test_backend_implements_the_serving_interface():
    from chiml.serving.backend import Endpoint, EndpointBackend

    eps = backend(ready_after=1)
    assert isinstance(eps, EndpointBackend)
    assert isinstance(eps.deploy("s3://chiml-models/a", "a", poll_s=0.01), Endpoint)
    assert eps.url("a") == "http://a-chiml.203.0.113.7.nip.io"


def test_a_deploy_that_never_gets_ready_is_removed():
    eps = backend(ready_after=1, fail={"broken"})
    eps.api.core.add_event("chiml", "Pod", "broken-predictor-abc", "BackOff", "Back-off restarting failed container")
    with pytest.raises(ChimlError) as caught:
        eps.deploy("s3://chiml-models/x", "broken", runtime="onnxruntime", timeout_s=0.05, poll_s=0.01)
    assert "did not become ready" in caught.value.message and "MinimumReplicasUnavailable" in caught.value.message
    assert "Back-off restarting" in caught.value.hint
    assert eps.api.get_isvc("chiml", "broken") is None  # nothing left behind


def test_foreign_inference_service_is_not_touched():
    eps = backend()
    eps.api.create_isvc("chiml", {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                  "metadata": {"name": "theirs"}, "spec": {"predictor": {}}})
    with pytest.raises(ChimlError, match="not created by chiml"):
        eps.deploy("s3://b/m", "theirs", poll_s=0.01)
    assert eps.list() == []  # list shows chiml's endpoints only


def test_auth_token_comes_from_the_generated_secret():
    eps = backend()
    assert eps.auth() is None
    ensure_platform_secrets(eps.api, "chiml")
    user, token = eps.auth()
    assert user == "chiml" and len(token) == 40
    users = eps.api.read_secret("chiml", "chiml-inference-auth")["users"]
    import bcrypt

    name, hashed = users.split(":", 1)
    assert name == "chiml" and hashed.startswith("$2y$")
    assert bcrypt.checkpw(token.encode(), ("$2b$" + hashed[4:]).encode())
    # a second `up` keeps the credentials the data depends on
    assert ensure_platform_secrets(eps.api, "chiml") == []
    assert eps.auth() == (user, token)


@pytest.mark.parametrize("base_url", ["http://203.0.113.7.nip.io", "https://ml.example.org"])
def test_endpoint_url_is_the_one_kserve_reports(base_url: str):
    """Before KServe reports a URL chiml predicts it; both must follow helm/values/kserve-resources.yaml."""
    context = cluster_context(base_url)
    eps = backend(ready_after=3, context=context)
    eps.api.create_isvc("chiml", eps.build("s3://chiml-models/digits/1", "digits", "onnxruntime", 1, 1))
    before = eps.get("digits")
    assert before is not None and before.status == "starting"
    reported = eps.deploy("s3://chiml-models/digits/1", "digits", runtime="onnxruntime", poll_s=0.01).url
    assert before.url == reported == kserve_url(context, "digits", "chiml")
    assert reported.startswith(f"{context.ingress_scheme}://digits-chiml.{context.ingress_domain}")


def test_proxied_artifacts_resolve_under_mlflows_artifact_root():
    from chiml.kube.endpoints import ARTIFACT_BUCKET_ROOT

    assert mlflow_artifact_root() == ARTIFACT_BUCKET_ROOT


# ----------------------------------------------------------------- updates, autoscaling, compiled artifacts
def test_an_update_is_a_patch_that_rolls_without_unavailable_pods():
    eps = backend(ready_after=1)
    eps.deploy("s3://chiml-models/v1", "digits", runtime="onnxruntime", replicas=2, poll_s=0.01)
    calls_before = list(eps.api.custom.calls)
    updated = eps.update("digits", "s3://chiml-models/v2", runtime="onnxruntime")
    new_calls = eps.api.custom.calls[len(calls_before):]
    assert "patch inferenceservices chiml/digits" in new_calls
    assert not [c for c in new_calls if c.startswith(("create", "delete"))]  # never delete + create
    obj = eps.api.get_isvc("chiml", "digits")
    predictor = obj["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == "s3://chiml-models/v2" and updated.replicas == 2
    assert predictor["deploymentStrategy"] == {"type": "RollingUpdate",
                                               "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    with pytest.raises(NotFoundError, match="no endpoint named 'ghost'"):
        eps.update("ghost", "s3://chiml-models/v2")


def test_autoscaling_flags_map_onto_the_inference_service():
    eps = backend(ready_after=1)
    endpoint = eps.deploy("s3://m/1", "auto", runtime="onnxruntime", min_replicas=1, max_replicas=4,
                          scale_target=60, poll_s=0.01)
    predictor = eps.api.get_isvc("chiml", "auto")["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 4)
    assert predictor["scaleMetric"] == "cpu" and predictor["scaleTarget"] == 60
    assert eps.api.get_isvc("chiml", "auto")["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    assert (endpoint.min_replicas, endpoint.max_replicas, endpoint.scale_metric) == (1, 4, "cpu")
    # an update keeps the range; a fixed count removes the autoscaling fields (merge patch nulls)
    eps.deploy("s3://m/2", "auto", runtime="onnxruntime", poll_s=0.01)
    assert eps.api.get_isvc("chiml", "auto")["spec"]["predictor"]["scaleTarget"] == 60
    fixed = eps.scale("auto", 2)
    predictor = eps.api.get_isvc("chiml", "auto")["spec"]["predictor"]
    assert "scaleMetric" not in predictor and "scaleTarget" not in predictor
    assert (fixed.min_replicas, fixed.max_replicas, fixed.replicas) == (2, 2, 2)
    eps.scale("auto", min_replicas=2, max_replicas=5, scale_metric="memory")
    assert eps.api.get_isvc("chiml", "auto")["spec"]["predictor"]["scaleMetric"] == "memory"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"min_replicas": 1, "max_replicas": 3, "scale_metric": "concurrency"}, NotSupportedError,
         "scale metric 'concurrency' is not available on a cluster"),
        ({"min_replicas": 1, "max_replicas": 3, "scale_target": 150}, InvalidInputError, "1-100"),
        ({"min_replicas": 4, "max_replicas": 2}, InvalidInputError, "--min-replicas 4 is more than --max-replicas 2"),
        ({"replicas": 2, "max_replicas": 3}, InvalidInputError, "either --replicas or"),
        ({"replicas": 2, "scale_metric": "cpu"}, InvalidInputError, "need an autoscaling range"),
    ],
)
def test_scaling_the_webhook_would_refuse_is_one_line_before_anything_is_sent(options, error, message):
    eps = backend(ready_after=1)
    with pytest.raises(error, match=message):
        eps.deploy("s3://m/1", "refused", runtime="onnxruntime", poll_s=0.01, **options)
    assert eps.api.custom.calls == [] or all(not c.startswith(("create", "patch")) for c in eps.api.custom.calls)


def test_the_fake_api_server_refuses_what_kserves_webhook_refuses():
    """The fake is only worth what it rejects: a concurrency metric under the HPA is refused."""
    eps = backend(ready_after=1)
    body = eps.build("s3://m/1", "webhook", "onnxruntime", None, None, min_replicas=1, max_replicas=2)
    body["spec"]["predictor"]["scaleMetric"] = "concurrency"
    with pytest.raises(ChimlError, match=r"the cluster refused to create .*not a supported metric"):
        eps._send("create InferenceService webhook", eps.api.create_isvc, "chiml", body)
    body["spec"]["predictor"]["scaleMetric"] = "cpu"
    body["spec"]["predictor"]["modelFormat"] = {"name": "onnx"}  # a field the predictor does not have
    with pytest.raises(ChimlError, match="unknown field 'modelFormat'"):
        eps._send("create InferenceService webhook", eps.api.create_isvc, "chiml", body)


def _optimized_version(tracking_uri: str, chosen: str | None, passed: str = "") -> str:
    """A registered version with an optimize run recorded as `chiml optimize` records it."""
    from mlflow import MlflowClient

    from chiml.optimize import tracking

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model("digits")
    version = client.create_model_version("digits", "mlflow-artifacts:/1/r0/artifacts/model").version
    if chosen is None:
        return version
    # proxied artifacts, as the platform's MLflow server records them
    experiment = client.create_experiment(tracking.EXPERIMENT, artifact_location="mlflow-artifacts:/7")
    run = client.create_run(experiment, tags={tracking.TAG_MODEL: "digits", tracking.TAG_VERSION: version,
                                              tracking.TAG_CHOSEN: chosen, tracking.TAG_PASSED: passed or chosen})
    client.set_terminated(run.info.run_id, "FINISHED")
    for key, value in ((tracking.VERSION_TAG_RUN, run.info.run_id), (tracking.VERSION_TAG_CHOSEN, chosen)):
        client.set_model_version_tag("digits", version, key, value)
    return run.info.run_id


def _resolving_backend(tracking_uri: str) -> KServeEndpoints:
    from chiml.kube.endpoints import OptimizedArtifact
    from chiml.lifecycle import mlflow_client
    from chiml.optimize.artifacts import compiled_artifact

    return backend(ready_after=1, resolve_optimized=lambda uri, runtime: OptimizedArtifact(
        *compiled_artifact(mlflow_client.client(tracking_uri), uri, runtime)))


@pytest.mark.parametrize(("chosen", "runtime", "folder"), [
    ("onnxruntime-int8", "onnxruntime", "runtimes/onnxruntime-int8"),
    ("openvino", "openvino", "runtimes/openvino"),
    ("tensorrt", "tensorrt", "triton"),
])
def test_runtime_auto_serves_the_compiled_artifact_optimize_chose(tmp_path: Path, chosen, runtime, folder):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = _optimized_version(tracking_uri, chosen)
    eps = _resolving_backend(tracking_uri)
    endpoint = eps.deploy("models:/digits/1", "digits", runtime="auto", poll_s=0.01)
    model = eps.api.get_isvc("chiml", "digits")["spec"]["predictor"]["model"]
    assert model["storageUri"] == f"{mlflow_artifact_root()}/7/{run_id}/artifacts/{folder}"
    assert model["runtime"] == f"chiml-{runtime}" and endpoint.runtime == runtime
    assert endpoint.detail == f"models:/digits/1 ({chosen} artifact)"
    # an explicit compiled runtime serves its artifact too, never the MLflow model folder
    if runtime == "openvino":
        eps.deploy("models:/digits/1", "named", runtime="openvino", poll_s=0.01)
        named = eps.api.get_isvc("chiml", "named")["spec"]["predictor"]["model"]
        assert named["storageUri"].endswith("/artifacts/runtimes/openvino")


def test_runtime_auto_without_a_decision_is_one_clear_line(tmp_path: Path):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _optimized_version(tracking_uri, None)
    eps = _resolving_backend(tracking_uri)
    with pytest.raises(ChimlError) as caught:
        eps.deploy("models:/digits/1", "digits", runtime="auto", poll_s=0.01)
    assert "models:/digits/1 has no optimized runtime" in caught.value.message
    assert "chiml optimize models:/digits/1" in caught.value.hint
    assert eps.api.get_isvc("chiml", "digits") is None
    with pytest.raises(InvalidInputError, match="serves what `chiml optimize` compiled"):
        eps.deploy("runs:/abc/model", "digits", runtime="auto", poll_s=0.01)


def test_every_manifest_chiml_builds_is_valid_for_kserve():
    from tests.kube.schemas import validate

    eps = backend()
    bodies = [
        eps.build("s3://m/1", "fixed", "onnxruntime", 2, 3),
        eps.build("s3://m/1", "scaled", "mlflow", None, None, min_replicas=1, max_replicas=8, scale_target=70),
        eps.build("s3://m/1", "memory", "openvino", None, None, min_replicas=2, max_replicas=3,
                  scale_metric="memory", scale_target=512),
        eps.build("s3://m/engine", "trt", "tensorrt", 1, 1),
        *KServeEndpoints(None, "chiml").manifests("models:/digits@production", "dry", runtime="auto"),
    ]
    for body in bodies:
        validate(body)


def test_deploy_dry_run_prints_the_objects_without_contacting_anything(tmp_path: Path):
    """Like `kubectl --dry-run=client -o yaml`: no kubeconfig, no MLflow, no cluster needed."""
    import json
    import os
    import subprocess
    import sys

    from tests.kube.schemas import validate

    config = tmp_path / "chiml.yaml"
    missing = tmp_path / "no-such-kubeconfig"
    config.write_text(yaml.safe_dump({"profile": "kubernetes", "kubernetes": {"kubeconfig": str(missing)}}))
    env = {k: v for k, v in os.environ.items() if k not in ("CHIML_HOME", "KUBECONFIG")}

    def chiml(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chiml.cli.main", *args, "--config", str(config)],
                              capture_output=True, text=True, timeout=120, env=env, check=False)

    shown = chiml("deploy", "models:/digits@production", "--name", "digits", "--runtime", "onnxruntime",
                  "--min-replicas", "1", "--max-replicas", "3", "--dry-run")
    assert shown.returncode == 0, shown.stderr
    (doc,) = list(yaml.safe_load_all(shown.stdout))
    validate(doc)
    predictor = doc["spec"]["predictor"]
    assert doc["kind"] == "InferenceService" and doc["metadata"]["name"] == "digits"
    assert predictor["model"]["runtime"] == "chiml-onnxruntime" and predictor["maxReplicas"] == 3
    assert predictor["model"]["storageUri"].startswith("<resolved at deploy: the onnxruntime artifact of")
    listed = chiml("deploy", "s3://chiml-models/digits/1", "--name", "digits", "--dry-run", "--json")
    assert listed.returncode == 0, listed.stderr
    (body,) = json.loads(listed.stdout)
    assert body["spec"]["predictor"]["model"]["storageUri"] == "s3://chiml-models/digits/1"
    bad = chiml("deploy", "s3://m", "--name", "digits", "--scale-metric", "concurrency", "--min-replicas", "1",
                "--max-replicas", "2", "--dry-run")
    assert bad.returncode == 1 and "not available on a cluster" in bad.stderr and "Traceback" not in bad.stderr
    assert not missing.exists()
