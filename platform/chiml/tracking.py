"""The helper API training scripts import: ``from chiml import tracking as ct``.

One script, three ways to run it, no code changes: under ``chiml train`` (chiml's MLflow run),
inside ``chiml tune`` (one Optuna trial per run of the script) and as plain ``python script.py``
(see :mod:`chiml.lifecycle.context`).

Example::

    from chiml import tracking as ct

    p = ct.params(epochs=5, lr=ct.float_range(1e-4, 1e-1, log=True, default=1e-2))
    for epoch in range(p["epochs"]):
        ...
        ct.log_metrics(step=epoch, loss=loss, val_accuracy=acc)
        if ct.should_prune():
            raise ct.Pruned()
    ct.log_model(model, input_example=X[:5])
"""

from __future__ import annotations

import optuna

from chiml.lifecycle.context import (
    ENV_DEVICE,
    ENV_PARAMS,
    ENV_TB_LOGDIR,
    ENV_THREADS,
    Mode,
    device,
    in_trial,
    mode,
    run_id,
    tb_logdir,
    threads,
)
from chiml.lifecycle.metrics import log_metrics, objective, report, should_prune
from chiml.lifecycle.model_logging import log_model
from chiml.lifecycle.params import log_params, params
from chiml.lifecycle.space import Space, choice, float_range, int_range

#: Raise this (``raise ct.Pruned()``) when :func:`should_prune` says so.
Pruned = optuna.TrialPruned

__all__ = [
    "ENV_DEVICE",
    "ENV_PARAMS",
    "ENV_TB_LOGDIR",
    "ENV_THREADS",
    "Mode",
    "Pruned",
    "Space",
    "choice",
    "device",
    "float_range",
    "in_trial",
    "int_range",
    "log_metrics",
    "log_model",
    "log_params",
    "mode",
    "objective",
    "params",
    "report",
    "run_id",
    "should_prune",
    "tb_logdir",
    "threads",
]
