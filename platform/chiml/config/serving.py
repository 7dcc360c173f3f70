"""The `serving:` section: model endpoints (local processes or KServe InferenceServices)."""

from __future__ import annotations

from pydantic import Field

from chiml.config.base import Section


class ServingConfig(Section):
    """Defaults for `chiml deploy`, `chiml endpoints` and `chiml predict`."""

    runtime: str = Field("mlflow", description="default runtime: mlflow (pyfunc) or a compiled runtime, or auto")
    workers: int = Field(1, ge=1, le=64, description="server worker processes per replica")
    replicas: int = Field(1, ge=1, le=64, description="replicas (local: processes; Kubernetes: pods)")
    ready_timeout_s: float = Field(
        300.0, gt=0, description="how long deploy/scale wait for an endpoint to load its model and answer"
    )
    request_timeout_s: float = Field(60.0, gt=0, description="timeout of one prediction request")
    scale_down_delay_s: float = Field(
        30.0, ge=0, description="local autoscaling: how long load must stay low before replicas are removed"
    )
    autoscale_interval_s: float = Field(2.0, gt=0, description="local autoscaling: seconds between decisions")
