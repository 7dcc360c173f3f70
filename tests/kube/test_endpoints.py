"""KServe endpoint backend against fake Kubernetes API objects (with a simulated KServe controller)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chiml.errors import ChimlError
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
    with pytest.raises(ChimlError, match="does not scale to zero"):
        eps.scale("a", 0)
    assert eps.api.get_isvc("chiml", "a")["spec"]["predictor"]["maxReplicas"] == 3
    # redeploying under the same name updates the model in place (a new generation)
    again = eps.deploy("s3://chiml-models/b", "a", runtime="openvino", poll_s=0.01)
    assert again.model_uri == "s3://chiml-models/b" and eps.api.get_isvc("chiml", "a")["metadata"]["generation"] == 3
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
