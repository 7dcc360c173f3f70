"""DeepSparse's isolated environment: created for real on first use (about a minute with a warm
pip cache), its numpy<2 / onnx<1.15 pins stay out of the platform's environment, and the same
runtime class measures and serves inside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from chiml.optimize import deepsparse_env
from chiml.optimize.pipeline import optimize
from tests.optimize import models

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]


def test_docker_requirements_match_the_env_pins() -> None:
    lines = (REPO / "services/serving/docker/deepsparse/requirements.txt").read_text().splitlines()
    pins = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert set(deepsparse_env.PINS) <= pins


@pytest.mark.skipif(deepsparse_env.unsupported_reason() is not None, reason=str(deepsparse_env.unsupported_reason()))
def test_env_is_created_isolated_and_runs_deepsparse(platform: SimpleNamespace, mlflow_uri: str) -> None:
    steps: list[str] = []
    python = deepsparse_env.ensure(platform.home, steps.append)
    assert python == deepsparse_env.python_path(platform.home) and python.is_file()
    assert deepsparse_env.is_ready(platform.home)
    assert any("creating" in step for step in steps) or deepsparse_env.is_ready(platform.home)
    versions = subprocess.run([str(python), "-c", "import numpy, onnx, deepsparse; print(numpy.__version__, "
                               "onnx.__version__, deepsparse.__version__)"], capture_output=True, text=True,
                              check=True).stdout.split()
    assert versions == ["1.26.4", "1.14.1", "1.8.0"]
    assert int(np.__version__.split(".")[0]) >= 2  # the platform keeps its own numpy
    assert subprocess.run([sys.executable, "-c", "import deepsparse"], capture_output=True).returncode != 0
    assert deepsparse_env.ensure(platform.home) == python  # idempotent: no second install

    models.log_torch(mlflow_uri, "digits-ds", models.torch_mlp(hidden=32, epochs=5))
    report = optimize(platform, "models:/digits-ds@production", "deepsparse", batches=(1, 8), budget_s=0.1)
    row = report.row("deepsparse")
    assert row.status == "ok", row.reason
    assert row.gate["max_abs"] < 1e-4 and row.gate["top1"] == 1.0
    assert report.chosen == "deepsparse"
