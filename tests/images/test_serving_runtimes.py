"""Every CPU serving runtime, as KServe instantiates our ClusterServingRuntime for an
InferenceService: the chart's container (image, command, args, env, securityContext with
runAsUser 10001 and a read-only root), the model laid out as KServe's storage initializer lays
it out (the storageUri's files directly under /mnt/models, owned by root, mounted read-only),
and V2 answers equal to the model's own."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from charts import render
from podman_kubelet import Kubelet, PodFailed, inference_service_pod

from chiml.optimize import candidates as cands
from chiml.optimize.export import export
from chiml.optimize.source import InputSpec
from tests.optimize import models

INPUTS = [InputSpec("input", "float32", [-1, 64])]
ISVC = "digits"


def _storage_initializer_layout(source: Path, dest: Path) -> Path:
    """What KServe's storage initializer leaves in /mnt/models for storageUri .../<model>/: the
    prefix's files at the top level, written by root (read-only for the runtime's user)."""
    shutil.copytree(source, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


@pytest.fixture(scope="module")
def digits_data() -> np.ndarray:
    _, _, held, _ = models.digits()
    return held[:16]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory, digits_data: np.ndarray) -> dict[str, tuple[Path, np.ndarray]]:
    """{runtime: (model folder, the model's own answer for digits_data)}."""
    import mlflow.pytorch
    import mlflow.sklearn
    import torch
    from mlflow.models import infer_signature

    root = Path(tmp_path_factory.mktemp("models"))
    mlp = models.torch_mlp(hidden=32, epochs=3)
    with torch.no_grad():
        expected_mlp = mlp(torch.from_numpy(digits_data)).numpy()
    mlflow.pytorch.save_model(mlp, str(root / "torch"), signature=infer_signature(digits_data, expected_mlp),
                              input_example=digits_data[:2], serialization_format="pt2")
    exported = export("pytorch", root / "torch", INPUTS, {"input": digits_data}, root / "onnx")
    dirs: dict[str, tuple[Path, np.ndarray]] = {}
    for name in ("onnxruntime", "openvino", "deepsparse"):
        artifact = cands.build_artifact(cands.Candidate(name, name), exported, root / "artifacts", {})
        dirs[name] = (artifact, expected_mlp)
    x, y, _, _ = models.digits()
    sk = models.sklearn_logreg().fit(x[:400].astype(np.float64), y[:400])
    as64 = digits_data.astype(np.float64)
    mlflow.sklearn.save_model(sk, str(root / "sklearn"), signature=infer_signature(as64, sk.predict(as64)),
                              pip_requirements=[])
    dirs["mlflow"] = (root / "sklearn", sk.predict(as64))
    return dirs


def _v2(port: int, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST" if body else "GET",
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("runtime", ["mlflow", "onnxruntime", "openvino", "deepsparse"])
def test_runtime_pod_serves_the_model_v2_equal(runtime: str, catalog, podman, built, container_dir: Path,
                                              model_dirs, digits_data: np.ndarray) -> None:
    if runtime == "deepsparse":
        flags = Path("/proc/cpuinfo").read_text()
        if " avx2" not in flags:
            pytest.skip("DeepSparse needs an x86-64 CPU with AVX2")
    built(f"serving-{runtime}")
    manifests = render("chiml-runtimes", catalog)
    csr = manifests.find("ClusterServingRuntime", f"chiml-{runtime}")
    assert csr is not None, f"chart renders no ClusterServingRuntime chiml-{runtime}"
    source, expected = model_dirs[runtime]
    pod = inference_service_pod(csr, manifests, ISVC, _storage_initializer_layout(source, container_dir / "models"))
    kubelet = Kubelet(podman, secrets={})
    running = kubelet.run(pod)
    try:
        port = running.ports["kserve-container"][8080]
        meta = _v2(port, f"/v2/models/{ISVC}")
        tensor = meta["inputs"][0]
        x = digits_data.astype(np.float64 if tensor["datatype"] == "FP64" else np.float32)
        answer = _v2(port, f"/v2/models/{ISVC}/infer", {"inputs": [
            {"name": tensor["name"], "datatype": tensor["datatype"], "shape": list(x.shape), "data": x.ravel().tolist()}
        ]})
        out = answer["outputs"][0]
        got = np.asarray(out["data"]).reshape(out["shape"])
        if runtime == "mlflow":
            np.testing.assert_array_equal(got.ravel(), expected.ravel())
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    finally:
        kubelet.stop(running)


def test_runtime_pod_whose_image_lacks_the_runtime_fails(catalog, podman, built, container_dir: Path,
                                                         model_dirs) -> None:
    """A chart that names an image that does not carry the runtime it asks for never gets ready."""
    built("serving-onnxruntime")
    manifests = render("chiml-runtimes", catalog,
                       overrides={"runtimes.onnxruntime.image": catalog.ref("tensorboard")})
    built("tensorboard")
    csr = manifests.find("ClusterServingRuntime", "chiml-onnxruntime")
    source, _ = model_dirs["onnxruntime"]
    pod = inference_service_pod(csr, manifests, ISVC, _storage_initializer_layout(source, container_dir / "models"))
    kubelet = Kubelet(podman, secrets={}, ready_timeout=60)
    with pytest.raises(PodFailed, match=r"exited before|not ready"):
        kubelet.run(pod)
    podman.cleanup()
