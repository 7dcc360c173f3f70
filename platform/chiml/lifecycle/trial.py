"""The tuning worker's hooks: make the helpers act for one Optuna trial, then close it."""

from __future__ import annotations

import sys
from typing import Any

import optuna

from chiml.lifecycle import context
from chiml.lifecycle.context import RunContext


def begin_trial(
    trial: optuna.Trial,
    overrides: dict[str, Any],
    metric: str | None,
    tb_logdir: str,
    mlflow_run_id: str,
    threads: int,
) -> RunContext:
    """Make the helpers act for one trial (called by :mod:`chiml.lifecycle.worker`)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    ctx = RunContext(
        mode="trial",
        tracking=True,
        overrides=dict(overrides),
        tb_logdir=tb_logdir,
        trial=trial,
        metric=metric,
        run_id=mlflow_run_id,
    )
    context.replace(ctx)
    return ctx


def end_trial(success: bool) -> RunContext | None:
    """Close the trial's context (its TensorBoard HParams) and leave no context current."""
    ctx = context.replace(None)
    if ctx is not None:
        ctx.close(success)
    return ctx
