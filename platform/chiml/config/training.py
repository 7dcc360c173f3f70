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
    cpu: str = Field("1", description="CPU request of a training pod on a cluster profile (Kubernetes quantity)")
    memory: str = Field("4Gi", description="memory request and limit of a training pod on a cluster profile")
    cpu_limit: str | None = Field(None, description="CPU limit of a training pod (default: none, use idle CPU)")
    image: str | None = Field(
        None, description="trainer image of cluster runs (default: ghcr.io/chiml-project/trainer:<chiml version>)"
    )
    ttl_seconds: int = Field(
        3600, ge=0, description="how long a finished training Job stays on the cluster (ttlSecondsAfterFinished)"
    )
    code_limit_bytes: int = Field(
        700 * 1024,
        ge=1024,
        le=750 * 1024,
        description="largest packaged script folder (tar.gz) sent to the cluster; a ConfigMap holds at most 1 MiB "
        "and binaryData is base64 (4/3 larger)",
    )
    tune_pruner: Literal["median", "hyperband", "successive-halving", "none"] = Field(
        "median", description="pruner of new studies without --pruner"
    )
