"""`pip install` from the repository gives a working `chiml deploy` path.

The three distributions are installed (not editable) into a throwaway venv from their paths, the
way a user installs a checkout: ``pip install ./contract ./services/serving .``. Their
third-party dependencies are not downloaded again: the venv sees this environment's
site-packages as a plain path entry, which does not run its .pth files, so the repository's own
editable packages stay invisible and every ``chiml*`` import must come from what pip installed.
Then the venv's interpreter imports what deploy imports and launches the endpoint process
exactly as the local backend does (the contract's ``serve_command``), which answers a prediction.
"""

from __future__ import annotations

import json
import site
import subprocess
import sys
import time
import venv
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import free_port
from tests.serving.conftest import Digits

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pip-install") / "venv"
    venv.create(directory, with_pip=True)
    python = directory / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "zz-platform-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         str(ROOT / "contract"), str(ROOT / "services" / "serving"), str(ROOT)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return python


def _run(python: Path, code: str) -> str:
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300, check=False,
                            cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_chiml_declares_the_contract_and_the_serving_runtime(installed: Path) -> None:
    requires = json.loads(_run(installed, "import importlib.metadata as m, json; "
                                          "print(json.dumps({d: m.requires(d) for d in "
                                          "('chiml', 'chiml-serving', 'chiml-contract')}))"))
    assert "chiml-contract==0.1.0" in requires["chiml"]
    assert "chiml-serving==0.1.0" in requires["chiml"]
    assert "chiml-contract==0.1.0" in requires["chiml-serving"]
    assert requires["chiml-contract"] in (None, [])  # standard library only


def test_deploys_imports_come_from_the_installed_packages(installed: Path) -> None:
    code = ("import chiml, chiml_contract, chiml_serving, chiml.serving.local, chiml.kube.endpoints, "
            "chiml.optimize.artifacts, chiml_serving.app, json; "
            "print(json.dumps([m.__file__ for m in (chiml, chiml_contract, chiml_serving)]))")
    for path in json.loads(_run(installed, code)):
        assert str(installed.parent.parent) in path, path  # not the checkout's editable packages


def test_the_installed_runtime_serves_a_model(installed: Path, digits: Digits, tmp_path: Path) -> None:
    from chiml_contract.runtimes import serve_command

    port = free_port()
    command = serve_command(str(installed), "mlflow", "digits", digits.model_dir, port)
    log = tmp_path / "endpoint.log"
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd="/",
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        x = digits.X[:4]
        body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [4, 64], "data": x.ravel().tolist()}]}
        response = httpx.post(f"http://127.0.0.1:{port}/v2/models/digits/infer", json=body, timeout=30)
        assert response.status_code == 200, response.text
        np.testing.assert_array_equal(response.json()["outputs"][0]["data"], digits.model.predict(x))
        assert "/v2/models/{model_name}/infer" in httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()["paths"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_contract_runs_without_anything_else() -> None:
    """chiml-contract imports with the standard library alone (it goes into the DeepSparse env too)."""
    code = "import sys; sys.path[:] = [p for p in sys.path if 'site-packages' not in p] + [sys.argv[1]]; " \
           "import chiml_contract, chiml_contract.runtimes, chiml_contract.artifact; print('ok')"
    result = subprocess.run([sys.executable, "-I", "-c", code, str(ROOT / "contract")], capture_output=True,
                            text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr
