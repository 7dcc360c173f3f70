"""Metrics and the objective: logged once, to MLflow, TensorBoard and (inside a trial) Optuna."""

from __future__ import annotations

from typing import Literal

from chiml.errors import InvalidInputError
from chiml.lifecycle.context import RunContext, current


def objective(metric: str, direction: Literal["minimize", "maximize"] = "minimize") -> None:
    """Declare what `chiml tune` optimizes when not told on the command line.

    `chiml tune` reads this call from the script *without running it* (a study's direction
    is fixed when it is created, before any trial runs), so write it with literal arguments,
    e.g. ``ct.objective("val_accuracy", "maximize")``. ``--metric``/``--direction`` win.
    """
    if direction not in ("minimize", "maximize"):
        raise InvalidInputError(f"objective: direction must be minimize or maximize, not {direction!r}")
    ctx = current()
    if ctx.metric is None:
        ctx.metric = metric


def log_metrics(step: int | None = None, **metrics: float) -> None:
    """Log metrics once, to both MLflow and TensorBoard (and to Optuna inside a trial).

    Inside a trial, the metric chosen with ``chiml tune --metric`` becomes the trial's
    intermediate value at ``step`` (what the pruners compare) and its last value the objective.
    """
    ctx = current()
    clean = {name: float(value) for name, value in metrics.items()}
    if ctx.mlflow_run_id() is not None:
        import mlflow

        mlflow.log_metrics(clean, step=step)
    tb = ctx.tb
    if tb is not None:
        for name, value in clean.items():
            tb.scalar(name, value, step=step if step is not None else 0)
    if ctx.metric is not None and ctx.metric in clean:
        _report(ctx, clean[ctx.metric], step)


def report(value: float, step: int | None = None) -> None:
    """Report the objective explicitly (and an intermediate value when ``step`` is given).

    Use it when the objective is not one of the logged metrics; it is also logged as the
    ``objective`` metric.
    """
    ctx = current()
    value = float(value)
    if ctx.mlflow_run_id() is not None:
        import mlflow

        mlflow.log_metric("objective", value, step=step)
    if ctx.tb is not None:
        ctx.tb.scalar("objective", value, step=step if step is not None else 0)
    _report(ctx, value, step)


def _report(ctx: RunContext, value: float, step: int | None) -> None:
    ctx.objective = value
    if ctx.trial is not None and step is not None:
        ctx.trial.report(value, step)


def should_prune() -> bool:
    """True when the trial's pruner says stop (always False outside tuning)."""
    trial = current().trial
    return bool(trial is not None and trial.should_prune())
