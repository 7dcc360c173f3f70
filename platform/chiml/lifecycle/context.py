"""The run context of a training script: which mode it runs in, and where it logs.

One script, three ways to run it, no code changes:

* ``chiml train script.py``: chiml created an MLflow run and wired it in through the
  environment (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``, ``MLFLOW_RUN_ID``,
  ``CHIML_TB_LOGDIR``, ``CHIML_PARAMS``); the helpers log to that run and that TensorBoard dir.
* ``chiml tune script.py``: a worker runs the script once per Optuna trial, in-process, with
  a trial context set (:mod:`chiml.lifecycle.trial`).
* ``python script.py``: search-space entries take their defaults; with ``MLFLOW_TRACKING_URI``
  set a new MLflow run is started, without it nothing is sent to MLflow (a warning says so) and
  TensorBoard events go to ``./runs/<timestamp>`` unless ``CHIML_TB_LOGDIR`` says otherwise.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna

from chiml.errors import InvalidInputError
from chiml.lifecycle.tbwriter import TBWriter

ENV_PARAMS = "CHIML_PARAMS"
ENV_TB_LOGDIR = "CHIML_TB_LOGDIR"
ENV_DEVICE = "CHIML_DEVICE"
ENV_THREADS = "CHIML_THREADS"

Mode = Literal["train", "trial", "plain"]

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What the helpers act for: one run (train/plain) or one trial."""

    mode: Mode
    tracking: bool
    overrides: dict[str, Any]
    tb_logdir: str | None
    trial: optuna.Trial | None = None
    metric: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    objective: float | None = None
    model_uri: str | None = None
    run_id: str | None = None
    _tb: TBWriter | None = None
    _noticed: bool = False

    @property
    def tb(self) -> TBWriter | None:
        if self._tb is None and self.tb_logdir:
            self._tb = TBWriter(self.tb_logdir)
        return self._tb

    def mlflow_run_id(self) -> str | None:
        """The MLflow run to log to (resuming chiml's run), or None when not tracking."""
        if not self.tracking:
            if not self._noticed:
                self._noticed = True
                log.warning("MLFLOW_TRACKING_URI is not set: nothing is sent to MLflow")
            return None
        if self.run_id is None:
            import mlflow

            active = mlflow.active_run()
            # start_run() with no arguments resumes MLFLOW_RUN_ID when chiml set it.
            self.run_id = (active or mlflow.start_run()).info.run_id
        return self.run_id

    def close(self, success: bool) -> None:
        tb = self._tb
        if tb is not None:
            if self.params:
                tb.hparams(self.params, success=success)
            tb.close()


_current: RunContext | None = None


def from_environment() -> RunContext:
    """The context ``chiml train`` (or a plain ``python script.py``) set up through the environment."""
    raw = os.environ.get(ENV_PARAMS, "") or "{}"
    try:
        overrides = json.loads(raw)
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{ENV_PARAMS} is not valid JSON: {err}") from None
    if not isinstance(overrides, dict):
        raise InvalidInputError(f"{ENV_PARAMS} must be a JSON object")
    mode: Mode = "train" if os.environ.get("MLFLOW_RUN_ID") else "plain"
    tracking = bool(os.environ.get("MLFLOW_TRACKING_URI"))
    tb_logdir = os.environ.get(ENV_TB_LOGDIR) or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    return RunContext(mode=mode, tracking=tracking, overrides=overrides, tb_logdir=tb_logdir)


def current() -> RunContext:
    """The context the helpers act for (read from the environment on first use)."""
    global _current
    if _current is None:
        _current = from_environment()
        atexit.register(_finish_process)
    return _current


def replace(ctx: RunContext | None) -> RunContext | None:
    """Make ``ctx`` the current context; return the one it replaces."""
    global _current
    previous, _current = _current, ctx
    return previous


def _finish_process() -> None:
    # Only the train/plain contexts end with the process; trials end in the worker's loop.
    if _current is not None and _current.mode != "trial":
        _current.close(success=True)


def mode() -> Mode:
    """``train`` (under ``chiml train``), ``trial`` (inside ``chiml tune``) or ``plain``."""
    return current().mode


def in_trial() -> bool:
    return current().trial is not None


def run_id() -> str | None:
    """The MLflow run this process logs to (None when not tracking)."""
    return current().mlflow_run_id()


def tb_logdir() -> str | None:
    """This run's TensorBoard directory."""
    return current().tb_logdir


def device() -> str:
    """``cuda`` when a GPU is usable (and not switched off with ``chiml train --no-gpu``), else ``cpu``."""
    forced = os.environ.get(ENV_DEVICE)
    if forced:
        return forced
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def threads() -> int:
    """How many CPU threads this run should use: its share under `chiml tune`, else every core.

    Pass it to frameworks that size their own thread pools (XGBoost's ``n_jobs``, LightGBM's
    ``num_threads``, CatBoost's ``thread_count``) so parallel trials do not oversubscribe.
    """
    raw = os.environ.get(ENV_THREADS, "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return os.cpu_count() or 1
