"""JupyterLab's chart pod for real: rendered with helm/values/jupyterlab.yaml and the images of
services/images.yaml (the trainer's notebooks variant), run under podman as a kubelet would (the
token and the platform's credentials from Secrets, read-only root, uid 10001, the notebook volume
a folder standing in for the PersistentVolumeClaim), ready by its probe. It refuses requests
without its token, answers with it, offers the `chiml` kernel only, and that kernel, started
through the server, imports every framework and sees the platform's environment."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid

import pytest
import yaml
from charts import REPO, render
from podman_kubelet import Kubelet, pods_of

from chiml.frameworks import GROUPS
from chiml.kube import secrets
from chiml.local.kernelspec import KERNEL_NAME

TOKEN = "test-token-" + uuid.uuid4().hex
CHART = yaml.safe_load((REPO / "helm" / "charts" / "jupyterlab" / "values.yaml").read_text())
FRAMEWORKS = [name for group in GROUPS.values() for name in group]
PLATFORM_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "CHIML_TENSORBOARD_LOGDIR", "OPTUNA_STORAGE")


def _status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _json(url: str, method: str = "GET", body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"{}")


async def _execute(port: int, kernel_id: str, code: str, timeout: float) -> str:
    """Run ``code`` in a kernel through the server's websocket (Jupyter's JSON message protocol);
    returns its stdout, raising on an error reply."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels"
    connection = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {TOKEN}"}))
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex,
              "version": "5.3", "date": ""}
    connection.write_message(json.dumps({
        "header": header, "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    stdout, error = [], None
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"the kernel did not finish in {timeout:.0f}s; output so far: {''.join(stdout)}")
            raw = await asyncio.wait_for(connection.read_message(), remaining)
            assert raw is not None, "the server closed the kernel's websocket"
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["header"]["msg_type"], message["content"]
            if kind == "stream":
                stdout.append(content["text"])
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                break
    finally:
        connection.close()
    assert error is None, error
    return "".join(stdout)


@pytest.fixture
def jupyterlab_pod(catalog, podman, built):
    built("trainer", "notebooks")
    manifests = render("jupyterlab", catalog)
    (pod,) = pods_of(manifests)
    pod.extra_volumes["home"] = (podman.tmpdir(), False)  # the PersistentVolumeClaim
    platform = CHART["platform"]
    kubelet = Kubelet(podman, secrets={
        secrets.JUPYTERLAB_SECRET: {secrets.JUPYTERLAB_TOKEN_KEY: TOKEN},
        secrets.S3_SECRET: {platform["s3"]["accessKeyKey"]: "test-key", platform["s3"]["secretKeyKey"]: "test-secret"},
        secrets.OPTUNA_PG_SECRET: {platform["optuna"]["usernameKey"]: "optuna",
                                   platform["optuna"]["passwordKey"]: "test-password"},
    })
    running = kubelet.run(pod)
    try:
        yield running.ports["jupyterlab"][CHART["port"]], running.containers[0]
    finally:
        kubelet.stop(running)


def test_jupyterlab_pod_requires_its_token_and_its_kernel_imports_every_framework(jupyterlab_pod, podman,
                                                                                  catalog) -> None:
    port, container = jupyterlab_pod
    base = f"http://127.0.0.1:{port}"
    assert _status(f"{base}/api/contents") == 403
    assert _status(f"{base}/api/contents", "wrong-token") == 403
    assert _status(f"{base}/api/contents", TOKEN) == 200
    assert _status(f"{base}/lab?token={TOKEN}") == 200
    specs = _json(f"{base}/api/kernelspecs")
    assert set(specs["kernelspecs"]) == {KERNEL_NAME}, "one kernel: the image's environment"

    kernel = _json(f"{base}/api/kernels", "POST", {"name": KERNEL_NAME})
    code = (
        "import importlib, json, os, sys, tempfile, mlflow\n"
        f"names = {FRAMEWORKS!r}\n"
        "versions = {n: str(getattr(importlib.import_module(n), '__version__', '')) for n in names}\n"
        f"env = {{k: os.environ.get(k, '') for k in {PLATFORM_ENV!r}}}\n"
        "with open(os.path.join(os.environ['HOME'], 'from-the-kernel.txt'), 'w') as f: f.write('kept')\n"
        "print('CHIML-KERNEL ' + json.dumps({'versions': versions, 'env': env, 'python': sys.executable,"
        " 'tracking_uri': mlflow.get_tracking_uri()}))\n"
    )
    try:
        output = asyncio.run(_execute(port, kernel["id"], code, timeout=600))
    finally:
        _json(f"{base}/api/kernels/{kernel['id']}", "DELETE")
    line = next(x for x in output.splitlines() if x.startswith("CHIML-KERNEL "))
    seen = json.loads(line.removeprefix("CHIML-KERNEL "))
    assert set(seen["versions"]) == set(FRAMEWORKS)
    assert seen["python"] == "/opt/venv/bin/python"
    (pod,) = pods_of(render("jupyterlab", catalog))
    env = {e["name"]: e.get("value") for e in pod.spec["containers"][0]["env"]}
    assert seen["tracking_uri"] == env["MLFLOW_TRACKING_URI"] == seen["env"]["MLFLOW_TRACKING_URI"]
    assert seen["env"]["AWS_ACCESS_KEY_ID"] == "test-key"
    assert seen["env"]["OPTUNA_STORAGE"].startswith("postgresql+psycopg2://optuna:test-password@")
    assert all(seen["env"][name] for name in PLATFORM_ENV)
    # the notebook volume is the home: what a kernel writes there outlives the pod
    listing = _json(f"{base}/api/contents")
    assert "from-the-kernel.txt" in {item["name"] for item in listing["content"]}
    logs = podman("logs", container, check=False)
    assert TOKEN not in logs.stdout + logs.stderr, "the server logged its token"
