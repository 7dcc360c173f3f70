"""Smoke checks of the platform on a cluster: pods Ready, MLflow answers in-cluster, and a sample
InferenceService reaches Ready and answers a V2 inference request."""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid

import pytest

PLATFORM_NAMESPACES = ("cert-manager", "cnpg-system", "kserve")


def _not_ready(pods: list[dict]) -> list[str]:
    bad = []
    for pod in pods:
        if pod["status"].get("phase") == "Succeeded":  # completed hook jobs
            continue
        conditions = pod["status"].get("conditions", [])
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            bad.append(f"{pod['metadata']['namespace']}/{pod['metadata']['name']} ({pod['status'].get('phase')})")
    return bad


def test_every_platform_pod_is_ready(kubectl, namespace):
    pods = []
    for ns in (namespace, *PLATFORM_NAMESPACES):
        pods += kubectl("get", "pods", "-n", ns, "-o", "json")["items"]
    assert pods, "no pods found: is the platform installed?"
    assert _not_ready(pods) == []


def test_mlflow_answers_in_cluster(pod_host, namespace):
    # from the TensorBoard pod (it has Python) to MLflow's Service, through cluster DNS
    host = pod_host("app.kubernetes.io/instance=tensorboard")
    out = host.check_output(
        "python -c \"import urllib.request; print(urllib.request.urlopen("
        f"'http://mlflow.{namespace}.svc:5000/health', timeout=10).read().decode())\""
    )
    assert out.strip() == "OK"


def _tiny_onnx_model() -> bytes:
    """y = 2x as an ONNX graph (float32[N,1]); built here so the test needs no model store."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 1])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 1])
    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["input", "two"], ["output"])], "double", [x], [y], [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_sample_inference_service_answers_v2(kubectl, pod_host, namespace):
    from chiml import Platform

    platform = Platform.connect()
    if platform.profile.name not in ("kubernetes", "chameleon"):
        pytest.skip(f"profile {platform.profile.name} has no KServe")
    name = f"smoke-{uuid.uuid4().hex[:6]}"
    key = f"smoke/{name}/1/model.onnx"
    uploader = pod_host("app.kubernetes.io/instance=tensorboard")
    pod = uploader.backend.name
    # upload through a pod that has boto3 and the S3 credentials (the store is not exposed)
    script = (
        "import boto3,os,sys; boto3.client('s3', endpoint_url=os.environ['S3_ENDPOINT'])"
        f".put_object(Bucket='chiml-models', Key='{key}', Body=sys.stdin.buffer.read())"
    )
    from chiml.tools import find_tool

    proc = subprocess.run(
        [find_tool("kubectl"), "exec", "-i", "-n", namespace, pod, "--", "python", "-c", script],
        input=_tiny_onnx_model(), capture_output=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    endpoints = platform.endpoints
    try:
        endpoint = endpoints.deploy(f"s3://chiml-models/smoke/{name}/1", name, runtime="onnxruntime", replicas=1,
                                    timeout_s=900)
        assert endpoint.status == "ready"
        request = json.dumps({"inputs": [{"name": "input", "shape": [2, 1], "datatype": "FP32", "data": [1.5, 4]}]})
        out = uploader.check_output(
            "python -c \"import sys,urllib.request; r=urllib.request.Request("
            f"'http://{name}-predictor.{namespace}.svc/v2/models/{name}/infer', data=sys.argv[1].encode(), "
            "headers={'Content-Type': 'application/json'}); "
            "print(urllib.request.urlopen(r, timeout=30).read().decode())\" "
            f"'{request}'"
        )
        outputs = json.loads(out)["outputs"]
        assert outputs[0]["data"] == [3.0, 8.0]
    finally:
        with contextlib.suppress(Exception):
            endpoints.delete(name)
