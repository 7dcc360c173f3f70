"""The correctness gate's arithmetic."""

from __future__ import annotations

import numpy as np

from chiml.optimize.gate import Tolerance, compare

REF = {"output": np.array([[0.1, 2.0, -1.0], [3.0, 0.5, 0.2]], dtype=np.float32)}


def test_identical_outputs_pass_with_zero_error() -> None:
    result = compare(REF, {"output": REF["output"].copy()}, Tolerance(), task="classifier")
    assert result.passed
    assert result.max_abs == 0.0
    assert result.top1 == 1.0
    assert result.samples == 2


def test_error_within_tolerance_passes_and_is_reported() -> None:
    got = REF["output"] + np.float32(5e-5)
    result = compare(REF, {"output": got}, Tolerance(atol=1e-4, rtol=0.0))
    assert result.passed
    assert 4e-5 < result.max_abs < 6e-5


def test_error_outside_tolerance_is_rejected_with_numbers() -> None:
    got = REF["output"].copy()
    got[1, 2] += 0.05
    result = compare(REF, {"output": got}, Tolerance(atol=1e-4, rtol=1e-3))
    assert not result.passed
    assert abs(result.max_abs - 0.05) < 1e-6
    assert abs(result.max_rel - 0.25) < 1e-4  # 0.05 / 0.2
    assert "outside atol" in result.failures[0]
    assert "max abs 5.00e-02" in result.summary()


def test_flipped_top1_fails_classifier_gate_even_when_values_are_close() -> None:
    ref = {"output": np.array([[1.0, 1.00001], [0.0, 5.0]], dtype=np.float32)}
    got = {"output": np.array([[1.00001, 1.0], [0.0, 5.0]], dtype=np.float32)}
    result = compare(ref, got, Tolerance(atol=1e-3, rtol=0.0, min_top1=0.99), task="classifier")
    assert result.top1 == 0.5
    assert not result.passed
    assert any("top-1" in failure for failure in result.failures)


def test_integer_labels_compared_by_agreement() -> None:
    ref = {"label": np.arange(100, dtype=np.int64)}
    got = {"label": np.arange(100, dtype=np.int64)}
    got["label"][0] = 7
    assert compare(ref, got, Tolerance(min_top1=0.99)).passed  # 99% agree
    got["label"][1] = 7
    failed = compare(ref, got, Tolerance(min_top1=0.99))
    assert not failed.passed and failed.top1 == 0.98


def test_shape_mismatch_and_missing_output_and_nan_fail() -> None:
    assert not compare(REF, {"output": np.zeros((2, 4), np.float32)}, Tolerance()).passed
    assert not compare(REF, {"other": REF["output"]}, Tolerance()).passed
    nan = REF["output"].copy()
    nan[0, 0] = np.nan
    result = compare(REF, {"output": nan}, Tolerance())
    assert not result.passed
    assert any("non-finite" in failure for failure in result.failures)


def test_rank_difference_with_same_size_is_reshaped() -> None:
    ref = {"variable": np.array([1.0, 2.0, 3.0])}
    got = {"variable": np.array([[1.0], [2.0], [3.0]], dtype=np.float32)}
    assert compare(ref, got, Tolerance()).passed
