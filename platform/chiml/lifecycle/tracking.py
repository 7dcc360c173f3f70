"""The helper API training scripts import: ``from chiml.lifecycle import tracking as ct``.

One script, three ways to run it, no code changes:

* ``chiml train script.py``: chiml created an MLflow run and wired it in through the
  environment (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``, ``MLFLOW_RUN_ID``,
  ``CHIML_TB_LOGDIR``, ``CHIML_PARAMS``); the helpers log to that run and that TensorBoard dir.
* ``chiml tune script.py``: a worker runs the script once per Optuna trial, in-process, with
  a trial context set; :func:`params` *suggests* the values of search-space entries, metrics
  become the trial's intermediate values and :func:`should_prune` asks the pruner.
* ``python script.py``: search-space entries take their defaults; with ``MLFLOW_TRACKING_URI``
  set a new MLflow run is started, without it nothing is sent to MLflow (a notice says so) and
  TensorBoard events go to ``./runs/<timestamp>`` unless ``CHIML_TB_LOGDIR`` says otherwise.

Example::

    from chiml.lifecycle import tracking as ct

    p = ct.params(epochs=5, lr=ct.float_range(1e-4, 1e-1, log=True, default=1e-2))
    for epoch in range(p["epochs"]):
        ...
        ct.log_metrics(step=epoch, loss=loss, val_accuracy=acc)
        if ct.should_prune():
            raise ct.Pruned()
    ct.log_model(model, input_example=X[:5])
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna

from chiml.errors import InvalidInputError, NotSupportedError
from chiml.lifecycle import flavors
from chiml.lifecycle.tbwriter import TBWriter

ENV_PARAMS = "CHIML_PARAMS"
ENV_TB_LOGDIR = "CHIML_TB_LOGDIR"
ENV_DEVICE = "CHIML_DEVICE"
ENV_THREADS = "CHIML_THREADS"

#: Raise this (``raise ct.Pruned()``) when :func:`should_prune` says so.
Pruned = optuna.TrialPruned

Mode = Literal["train", "trial", "plain"]


# ---------------------------------------------------------------------------- search space
@dataclass(frozen=True)
class Space:
    """A tunable parameter: a fixed default outside tuning, a suggestion inside it."""

    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    default: Any = None

    def default_value(self) -> Any:
        if self.default is not None:
            return self.default
        if self.kind == "categorical":
            return self.choices[0]
        assert self.low is not None and self.high is not None
        middle = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        return round(middle) if self.kind == "int" else middle

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


def float_range(
    low: float, high: float, *, log: bool = False, step: float | None = None, default: float | None = None
) -> Space:
    """A float in ``[low, high]`` (log-uniform with ``log=True``)."""
    if not low < high:
        raise InvalidInputError(f"float_range: low ({low}) must be below high ({high})")
    return Space("float", float(low), float(high), log=log, step=step, default=default)


def int_range(low: int, high: int, *, log: bool = False, step: int = 1, default: int | None = None) -> Space:
    """An integer in ``[low, high]``."""
    if not low < high:
        raise InvalidInputError(f"int_range: low ({low}) must be below high ({high})")
    return Space("int", low, high, log=log, step=step, default=default)


def choice(options: Sequence[Any], *, default: Any = None) -> Space:
    """One of ``options`` (None, bool, int, float or str: what Optuna can store)."""
    if not options:
        raise InvalidInputError("choice: needs at least one option")
    return Space("categorical", choices=tuple(options), default=default)


# ---------------------------------------------------------------------------- run context
@dataclass
class _Context:
    mode: Mode
    tracking: bool
    overrides: dict[str, Any]
    tb_logdir: str | None
    trial: optuna.Trial | None = None
    metric: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    objective: float | None = None
    model_uri: str | None = None
    _tb: TBWriter | None = None
    _run_id: str | None = None
    _noticed: bool = False

    @property
    def tb(self) -> TBWriter | None:
        if self._tb is None and self.tb_logdir:
            self._tb = TBWriter(self.tb_logdir)
        return self._tb


_current: _Context | None = None


def _from_environment() -> _Context:
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
    return _Context(mode=mode, tracking=tracking, overrides=overrides, tb_logdir=tb_logdir)


def _ctx() -> _Context:
    global _current
    if _current is None:
        _current = _from_environment()
        atexit.register(_finish_process)
    return _current


def _finish_process() -> None:
    # Only the train/plain contexts end with the process; trials end in the worker's loop.
    if _current is not None and _current.mode != "trial":
        _close(_current, success=True)


def _close(ctx: _Context, success: bool) -> None:
    tb = ctx._tb
    if tb is not None:
        if ctx.params:
            tb.hparams(ctx.params, success=success)
        tb.close()


def _mlflow_run_id(ctx: _Context) -> str | None:
    """The MLflow run to log to (resuming chiml's run), or None when not tracking."""
    if not ctx.tracking:
        if not ctx._noticed:
            ctx._noticed = True
            print("chiml: MLFLOW_TRACKING_URI is not set: nothing is sent to MLflow", file=sys.stderr)
        return None
    if ctx._run_id is None:
        import mlflow

        active = mlflow.active_run()
        # start_run() with no arguments resumes MLFLOW_RUN_ID when chiml set it.
        ctx._run_id = (active or mlflow.start_run()).info.run_id
    return ctx._run_id


# ---------------------------------------------------------------------------- public helpers
def mode() -> Mode:
    """``train`` (under ``chiml train``), ``trial`` (inside ``chiml tune``) or ``plain``."""
    return _ctx().mode


def in_trial() -> bool:
    return _ctx().trial is not None


def run_id() -> str | None:
    """The MLflow run this process logs to (None when not tracking)."""
    return _mlflow_run_id(_ctx())


def tb_logdir() -> str | None:
    """This run's TensorBoard directory."""
    return _ctx().tb_logdir


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


def objective(metric: str, direction: Literal["minimize", "maximize"] = "minimize") -> None:
    """Declare what `chiml tune` optimizes when not told on the command line.

    `chiml tune` reads this call from the script *without running it* (a study's direction
    is fixed when it is created, before any trial runs), so write it with literal arguments,
    e.g. ``ct.objective("val_accuracy", "maximize")``. ``--metric``/``--direction`` win.
    """
    if direction not in ("minimize", "maximize"):
        raise InvalidInputError(f"objective: direction must be minimize or maximize, not {direction!r}")
    ctx = _ctx()
    if ctx.metric is None:
        ctx.metric = metric


def params(**defaults: Any) -> dict[str, Any]:
    """This run's parameters: ``defaults`` overridden by ``--param``, search spaces resolved.

    Plain values are fixed parameters; :class:`Space` values (``float_range``, ``int_range``,
    ``choice``) are suggested by Optuna inside a trial and take their default otherwise.
    ``--param`` values win in every mode, and are converted to the default's type. Every
    resolved parameter is logged to MLflow and to TensorBoard's HParams.
    """
    ctx = _ctx()
    values: dict[str, Any] = {}
    for name, spec in defaults.items():
        if name in ctx.overrides:
            values[name] = _coerce(name, ctx.overrides[name], spec)
        elif isinstance(spec, Space):
            values[name] = spec.suggest(ctx.trial, name) if ctx.trial is not None else spec.default_value()
        else:
            values[name] = spec
    for name, value in ctx.overrides.items():
        values.setdefault(name, value)
    new = {k: v for k, v in values.items() if ctx.params.get(k, _MISSING) != v}
    ctx.params.update(values)
    if new:
        log_params(**new)
    return values


_MISSING = object()


def _coerce(name: str, value: Any, spec: Any) -> Any:
    """Give a ``--param`` value the type of its default (``epochs=5`` arrives as int, ``lr=1e-3`` as float)."""
    reference = spec.default_value() if isinstance(spec, Space) else spec
    if reference is None or type(value) is type(reference):
        return value
    try:
        if isinstance(reference, bool):
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if isinstance(reference, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(reference, float):
            return float(value)
        if isinstance(reference, str):
            return str(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"parameter {name}={value!r} is not a {type(reference).__name__}") from None
    return value


def log_params(**values: Any) -> None:
    """Log parameters to the MLflow run (HParams get them when the run ends)."""
    ctx = _ctx()
    ctx.params.update(values)
    if _mlflow_run_id(ctx) is not None:
        import mlflow

        mlflow.log_params({k: _param_text(v) for k, v in values.items()})


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]  # MLflow's limit for a param value


def log_metrics(step: int | None = None, **metrics: float) -> None:
    """Log metrics once, to both MLflow and TensorBoard (and to Optuna inside a trial).

    Inside a trial, the metric chosen with ``chiml tune --metric`` becomes the trial's
    intermediate value at ``step`` (what the pruners compare) and its last value the objective.
    """
    ctx = _ctx()
    clean = {name: float(value) for name, value in metrics.items()}
    run = _mlflow_run_id(ctx)
    if run is not None:
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
    ctx = _ctx()
    value = float(value)
    run = _mlflow_run_id(ctx)
    if run is not None:
        import mlflow

        mlflow.log_metric("objective", value, step=step)
    if ctx.tb is not None:
        ctx.tb.scalar("objective", value, step=step if step is not None else 0)
    _report(ctx, value, step)


def _report(ctx: _Context, value: float, step: int | None) -> None:
    ctx.objective = value
    if ctx.trial is not None and step is not None:
        ctx.trial.report(value, step)


def should_prune() -> bool:
    """True when the trial's pruner says stop (always False outside tuning)."""
    trial = _ctx().trial
    return bool(trial is not None and trial.should_prune())


def log_model(
    model: Any,
    input_example: Any = None,
    *,
    name: str = "model",
    signature: Any = None,
    **kwargs: Any,
) -> str | None:
    """Log ``model`` in MLflow's format with a signature inferred from ``input_example``.

    Supports torch ``nn.Module`` (``mlflow.pytorch``; Lightning modules and transformers
    models are torch modules), scikit-learn estimators (``mlflow.sklearn``) and, through
    :mod:`chiml.lifecycle.flavors`, Keras 3 models, XGBoost, LightGBM and CatBoost models,
    transformers pipelines and ``mlflow.pyfunc.PythonModel`` instances (the route for JAX);
    for anything else call that flavor's ``mlflow.<flavor>.log_model``.

    scikit-learn models are saved with skops (MLflow 3's default) and the types found in
    the model are passed as trusted: the model was just built by this very process, so it
    cannot be a hostile file (skops' check exists for files from elsewhere).

    Inside a trial the model is logged only when the trial beats the study's best so far, so
    the best trial always has its model without paying an upload for every trial.
    Returns the model URI (``models:/<model-id>``), or None when nothing was logged.
    """
    ctx = _ctx()
    if ctx.trial is not None and not _improves(ctx):
        return None
    if _mlflow_run_id(ctx) is None:
        return None
    flavor = _flavor(model)
    if flavor in _FRAMEWORK_FLAVORS:
        info = flavors.log(flavor, model, input_example, name, signature, kwargs)
    elif flavor == "pytorch":
        info = _log_torch(model, input_example, name, signature, kwargs)
    elif flavor == "sklearn":
        info = _log_sklearn(model, input_example, name, signature, kwargs)
    else:
        raise NotSupportedError(
            f"log_model: no built-in support for {type(model).__name__}",
            hint="call the matching mlflow.<flavor>.log_model yourself; chiml finds models logged to the run",
        )
    ctx.model_uri = info.model_uri
    import mlflow

    mlflow.set_tag("chiml.model_uri", info.model_uri)
    return info.model_uri


def _improves(ctx: _Context) -> bool:
    trial = ctx.trial
    assert trial is not None
    if ctx.objective is None:
        return True
    try:
        best = trial.study.best_value
    except ValueError:  # no complete trial yet
        return True
    if trial.study.direction == optuna.study.StudyDirection.MAXIMIZE:
        return ctx.objective > best
    return ctx.objective < best


_FRAMEWORK_FLAVORS = ("keras", "xgboost", "lightgbm", "catboost", "transformers", "pyfunc")


def _flavor(model: Any) -> str | None:
    # Framework flavors first: XGBoost/LightGBM wrappers are sklearn estimators, and a Keras
    # model on the torch backend is a torch module.
    framework = flavors.detect(model)
    if framework is not None:
        return framework
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return "pytorch"
    try:
        from sklearn.base import BaseEstimator
    except ImportError:
        return None
    return "sklearn" if isinstance(model, BaseEstimator) else None


def _requirements(*packages: str) -> list[str]:
    """Exact pins of what the model needs, from this environment.

    Given explicitly, MLflow skips its requirement inference, which loads the model in a
    fresh interpreter (seconds per log_model, too slow inside tuning).
    """
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("mlflow", *packages):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def _log_torch(model: Any, example: Any, name: str, signature: Any, kwargs: dict[str, Any]) -> Any:
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    if example is not None:
        example = np.asarray(example.detach().cpu().numpy() if isinstance(example, torch.Tensor) else example)
        if signature is None:
            was_training = model.training
            model.eval()
            with torch.no_grad():
                parameter = next(model.parameters(), None)
                tensor = torch.as_tensor(example)
                if parameter is not None:
                    tensor = tensor.to(parameter.device)
                output = model(tensor).detach().cpu().numpy()
            model.train(was_training)
            signature = infer_signature(example, output)
    kwargs.setdefault("pip_requirements", _requirements("torch", "numpy"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.pytorch.log_model(model, name=name, signature=signature, input_example=example, **kwargs)


def _log_sklearn(model: Any, example: Any, name: str, signature: Any, kwargs: dict[str, Any]) -> Any:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    if example is not None and signature is None:
        signature = infer_signature(example, model.predict(example))
    if kwargs.get("serialization_format", "skops") == "skops" and "skops_trusted_types" not in kwargs:
        import skops.io

        kwargs["skops_trusted_types"] = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    kwargs.setdefault("pip_requirements", _requirements("scikit-learn", "numpy", "skops"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.sklearn.log_model(model, name=name, signature=signature, input_example=example, **kwargs)


# ---------------------------------------------------------------------------- used by the tuning worker
def _begin_trial(
    trial: optuna.Trial,
    overrides: dict[str, Any],
    metric: str | None,
    tb_logdir: str,
    mlflow_run_id: str,
    threads: int,
) -> _Context:
    """Make the helpers act for one trial (called by :mod:`chiml.lifecycle.worker`)."""
    global _current
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    _current = _Context(
        mode="trial",
        tracking=True,
        overrides=dict(overrides),
        tb_logdir=tb_logdir,
        trial=trial,
        metric=metric,
        _run_id=mlflow_run_id,
    )
    return _current


def _end_trial(success: bool) -> _Context | None:
    global _current
    ctx, _current = _current, None
    if ctx is not None:
        _close(ctx, success)
    return ctx
