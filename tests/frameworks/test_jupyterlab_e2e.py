"""JupyterLab on the local platform: supervised, on loopback, token required and kept secret,
the ``chiml`` kernel imports every framework (and sees the GPU where one exists), and a
notebook run headlessly with nbclient reaches the platform through ``Platform.connect()``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from chiml.frameworks import GROUPS
from chiml.local import jupyterlab

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not jupyterlab.installed(), reason="JupyterLab is not installed: run `make frameworks`"),
]

REPO = Path(__file__).resolve().parents[2]


def _service(platform: Any) -> Any:
    found = [s for s in platform.status() if s.name == "jupyterlab"]
    assert found, f"no jupyterlab service in {[s.name for s in platform.status()]}"
    return found[0]


def _run_notebook(platform: Any, cells: list[str], timeout: int = 600) -> Any:
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[new_code_cell(source) for source in cells])
    saved = {k: os.environ.get(k) for k in jupyterlab.environment(platform.home)}
    os.environ.update(jupyterlab.environment(platform.home))  # the kernelspec dir the service uses
    try:
        client = NotebookClient(
            notebook, kernel_name=jupyterlab.KERNEL_NAME, timeout=timeout,
            resources={"metadata": {"path": str(jupyterlab.notebooks_dir(platform.home))}},
        )  # fmt: skip
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nbformat.from_dict(notebook)


def _stdout(notebook: Any, index: int) -> str:
    return "".join(o.get("text", "") for o in notebook.cells[index].outputs if o.get("name") == "stdout")


def test_service_is_up_on_loopback_and_requires_its_token(local_platform: Any) -> None:
    service = _service(local_platform)
    assert service.healthy, service
    assert service.url.startswith("http://127.0.0.1:")
    secret = local_platform.home / "secrets" / jupyterlab.TOKEN_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    token = secret.read_text().strip()
    assert len(token) >= 32

    url = service.url.rstrip("/")
    anonymous = httpx.get(f"{url}/api/contents", timeout=10, follow_redirects=False)
    assert anonymous.status_code == 403
    wrong = httpx.get(f"{url}/api/contents", headers={"Authorization": "token not-the-token"}, timeout=10)
    assert wrong.status_code == 403
    allowed = httpx.get(f"{url}/api/contents", headers={"Authorization": f"token {token}"}, timeout=10)
    assert allowed.status_code == 200
    kernels = httpx.get(f"{url}/api/kernelspecs", headers={"Authorization": f"token {token}"}, timeout=10).json()
    assert jupyterlab.KERNEL_NAME in kernels["kernelspecs"]


def test_token_is_in_no_log_and_on_no_command_line(local_platform: Any) -> None:
    token = (local_platform.home / "secrets" / jupyterlab.TOKEN_FILE).read_text().strip()
    leaks = []
    for path in local_platform.home.rglob("*"):
        if path.is_file() and "secrets" not in path.relative_to(local_platform.home).parts:
            try:
                if token in path.read_text(errors="ignore"):
                    leaks.append(str(path))
            except OSError:
                continue
    assert not leaks, f"the JupyterLab token is written in {leaks}"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "jupyter-lab" in ps and token not in ps


def test_kernel_imports_every_framework_and_reports_gpus(local_platform: Any) -> None:
    names = [name for group in GROUPS for name in GROUPS[group] if group != "notebooks"]
    probe = (
        "import importlib, json\n"
        f"names = {names!r}\n"
        "print(json.dumps({n: str(getattr(importlib.import_module(n), '__version__', '?')) for n in names}))"
    )
    gpu_probe = (
        "import json, torch, tensorflow as tf, jax\n"
        "print(json.dumps({'torch_cuda_build': torch.version.cuda is not None, 'torch': torch.cuda.is_available(),"
        " 'tf_cuda_build': tf.test.is_built_with_cuda(), 'tf': bool(tf.config.list_physical_devices('GPU')),"
        " 'jax': any(d.platform in ('gpu', 'cuda') for d in jax.devices())}))"
    )
    notebook = _run_notebook(local_platform, [probe, gpu_probe])
    versions = json.loads(_stdout(notebook, 0))
    assert set(versions) == set(names)
    gpus = json.loads(_stdout(notebook, 1))
    has_gpu = shutil.which("nvidia-smi") is not None and subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True
    ).returncode == 0
    if not has_gpu:
        pytest.skip("no NVIDIA GPU on this host: the kernel's GPU visibility cannot be checked here")
    cuda_builds = [f for f, built in (("torch", gpus["torch_cuda_build"]), ("tf", gpus["tf_cuda_build"])) if built]
    if not cuda_builds:
        pytest.skip("a GPU is present but the installed frameworks are CPU builds (the local pins)")
    for framework in cuda_builds:
        assert gpus[framework], f"{framework} is a CUDA build but its kernel sees no GPU"


def test_notebook_connects_to_the_platform(local_platform: Any) -> None:
    notebook = _run_notebook(local_platform, [
        "from chiml import Platform\np = Platform.connect()\nprint(p.tracking_uri)",
        "print(sorted(s.name for s in p.status() if s.healthy))",
    ])  # fmt: skip
    assert _stdout(notebook, 0).strip() == local_platform.tracking_uri
    assert "mlflow" in _stdout(notebook, 1) and "jupyterlab" in _stdout(notebook, 1)


@pytest.mark.slow
def test_walkthrough_notebook(local_platform: Any) -> None:
    import nbformat

    cells = [c.source for c in nbformat.read(REPO / "examples" / "notebooks" / "walkthrough.ipynb", 4).cells
             if c.cell_type == "code"]  # fmt: skip
    notebook = _run_notebook(local_platform, cells, timeout=900)
    accuracy = float(_stdout(notebook, 4).split()[-1])
    assert accuracy >= 0.8
