"""The `training:` section: defaults of `chiml train` and `chiml tune`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chiml.config.base import Section


class TrainingConfig(Section):
    """Defaults for training runs and tuning studies."""

    experiment: str = Field("Default", description="MLflow experiment of runs started without --experiment")
    tune_workers: int = Field(1, ge=1, le=256, description="parallel trial workers of `chiml tune`")
    threads_per_worker: int = Field(1, ge=1, description="intra-op threads per tuning worker")
    tune_sampler: Literal["tpe", "random", "qmc", "gp", "cmaes"] = Field(
        "tpe", description="sampler of new studies without --sampler"
    )
    tune_pruner: Literal["median", "hyperband", "successive-halving", "none"] = Field(
        "median", description="pruner of new studies without --pruner"
    )
