"""`chiml optimize` as a user runs it: a real process, the local profile's config, MLflow given by
CHIML_TRACKING_URI (the local profile's override), JSON and table output, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_local_config

pytestmark = pytest.mark.e2e
CHIML = str(Path(sys.executable).parent / "chiml")


def _run(tmp_path: Path, mlflow_uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    write_local_config(tmp_path)
    env = {**os.environ, "CHIML_HOME": str(tmp_path / "home"), "CHIML_TRACKING_URI": mlflow_uri, "COLUMNS": "250"}
    return subprocess.run([CHIML, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_optimize_json_and_table(tmp_path: Path, mlflow_uri: str, digits_sklearn: str) -> None:
    done = _run(tmp_path, mlflow_uri, "optimize", digits_sklearn, "--target", "onnxruntime", "--batch-sizes", "1,4",
                "--budget", "0.05", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["chosen"] == "onnxruntime" and report["run_id"]
    assert [row["name"] for row in report["rows"]] == ["scikit-learn", "onnxruntime"]
    assert set(report["rows"][1]["p50_ms"]) == {"1", "4"}

    table = _run(tmp_path, mlflow_uri, "optimize", digits_sklearn, "--target", "onnxruntime", "--batch-sizes", "1",
                 "--budget", "0.05")
    assert table.returncode == 0, table.stderr
    assert "onnxruntime ✔" in table.stdout and "scikit-learn" in table.stdout
    assert "chiml deploy models:/digits-logreg@production --runtime auto" in table.stdout


def test_errors_are_one_line(tmp_path: Path, mlflow_uri: str, digits_sklearn: str) -> None:
    done = _run(tmp_path, mlflow_uri, "optimize", digits_sklearn, "--target", "tvm")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    # the same on every host: a GPU host with TensorRT would run the tensorrt target instead
    assert done.stderr.strip().splitlines()[0].startswith("error: unknown target 'tvm'")
    bad = _run(tmp_path, mlflow_uri, "optimize", digits_sklearn, "--batch-sizes", "1,x")
    assert bad.returncode == 1 and "--batch-sizes must be comma-separated integers" in bad.stderr
