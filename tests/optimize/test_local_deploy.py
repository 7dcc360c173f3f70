"""Done means: on a real local platform, `optimize --target auto` picks a runtime and
`deploy --runtime auto` serves it with the original model's predictions (within tolerance)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.optimize import models

pytestmark = pytest.mark.e2e


def test_optimize_then_deploy_auto_serves_the_original_answers(local_platform: Any) -> None:
    import torch

    platform = local_platform
    mlp = models.torch_mlp()
    models.log_torch(platform.tracking_uri, "digits-opt", mlp)
    report = platform.optimize("models:/digits-opt@production", "auto", batches=(1, 8), budget_s=0.1)
    assert report.chosen in ("onnxruntime", "openvino")
    assert {row.name: row.status for row in report.rows}["onnxruntime"] == "ok"

    endpoint = platform.deploy("models:/digits-opt@production", "digits-opt", runtime="auto")
    try:
        assert endpoint.runtime == report.chosen_runtime
        _, _, held, _ = models.digits()
        got = np.asarray(platform.predict("digits-opt", held[:32]))
        with torch.inference_mode():
            want = mlp(torch.from_numpy(held[:32])).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
        assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))
    finally:
        platform.endpoints.delete("digits-opt")
