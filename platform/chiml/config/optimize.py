"""The `optimize:` section: compiled runtimes and the benchmark that picks one."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from chiml.config.base import Section


class OptimizeConfig(Section):
    """Defaults for `chiml optimize`."""

    objective: Literal["latency", "throughput"] = Field("latency", description="what --target auto optimizes")
    allow_deepsparse: bool = Field(
        False, description="let --target auto consider DeepSparse (end-of-life, evaluation licence)"
    )
    batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        [1, 8, 64], min_length=1, description="batch sizes the benchmark times"
    )
    atol: float = Field(1e-4, ge=0, description="correctness gate: absolute tolerance")
    rtol: float = Field(1e-3, ge=0, description="correctness gate: relative tolerance")
    min_top1: float = Field(0.99, ge=0, le=1, description="correctness gate: minimum top-1 agreement (classifiers)")
