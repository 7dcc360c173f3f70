"""Correctness gate: does a compiled candidate still give the original model's answers?

Float outputs: max absolute and max relative error, passing when every element satisfies
``|got - ref| <= atol + rtol * |ref|`` (numpy's allclose rule). Integer outputs (class labels)
and, for classifiers, the arg-max of a score matrix: agreement must reach ``min_top1``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Tolerance:
    atol: float = 1e-4
    rtol: float = 1e-3
    min_top1: float = 0.99


@dataclass
class GateResult:
    passed: bool
    max_abs: float = 0.0
    max_rel: float = 0.0
    top1: float | None = None
    samples: int = 0
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        text = f"max abs {self.max_abs:.2e}, max rel {self.max_rel:.2e}"
        if self.top1 is not None:
            text += f", top-1 agreement {self.top1:.1%}"
        return text


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], tolerance: Tolerance,
            task: str = "other") -> GateResult:
    result = GateResult(passed=True)
    top1: list[float] = []
    for name, ref in reference.items():
        ref = np.asarray(ref)
        if name not in candidate:
            result.failures.append(f"output {name!r} missing")
            continue
        got = np.asarray(candidate[name])
        if got.size != ref.size:
            result.failures.append(f"output {name!r} has shape {list(got.shape)}, expected {list(ref.shape)}")
            continue
        got = got.reshape(ref.shape)
        result.samples = max(result.samples, int(ref.shape[0]) if ref.ndim else 1)
        if ref.dtype.kind in "iub" or ref.dtype.kind in "OUS":
            agree = float(np.mean(got.astype(ref.dtype) == ref)) if ref.size else 1.0
            top1.append(agree)
            continue
        ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
        if not np.all(np.isfinite(got64) == np.isfinite(ref64)):
            result.failures.append(f"output {name!r} has non-finite values where the original has none")
        diff = np.abs(got64 - ref64)
        finite = np.isfinite(diff)
        diff = np.where(finite, diff, 0.0)
        result.max_abs = max(result.max_abs, float(diff.max(initial=0.0)))
        rel = diff / np.maximum(np.abs(ref64), np.finfo(np.float32).tiny)
        result.max_rel = max(result.max_rel, float(rel.max(initial=0.0)))
        if not bool(np.all(diff <= tolerance.atol + tolerance.rtol * np.abs(ref64))):
            result.failures.append(f"output {name!r} outside atol {tolerance.atol:g} + rtol {tolerance.rtol:g}")
        if task == "classifier" and ref.ndim == 2 and ref.shape[1] > 1:
            top1.append(float(np.mean(np.argmax(got64, axis=1) == np.argmax(ref64, axis=1))))
    if top1:
        result.top1 = min(top1)
        if result.top1 < tolerance.min_top1:
            result.failures.append(f"top-1 agreement {result.top1:.1%} below {tolerance.min_top1:.0%}")
    result.passed = not result.failures
    return result
