"""A run's parameters: defaults, ``--param`` overrides and search spaces, resolved and logged."""

from __future__ import annotations

import json
from typing import Any

from chiml.errors import InvalidInputError
from chiml.lifecycle.context import current
from chiml.lifecycle.space import Space

_MISSING = object()


def params(**defaults: Any) -> dict[str, Any]:
    """This run's parameters: ``defaults`` overridden by ``--param``, search spaces resolved.

    Plain values are fixed parameters; :class:`Space` values (``float_range``, ``int_range``,
    ``choice``) are suggested by Optuna inside a trial and take their default otherwise.
    ``--param`` values win in every mode, and are converted to the default's type. Every
    resolved parameter is logged to MLflow and to TensorBoard's HParams.
    """
    ctx = current()
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
    ctx = current()
    ctx.params.update(values)
    if ctx.mlflow_run_id() is not None:
        import mlflow

        mlflow.log_params({k: _param_text(v) for k, v in values.items()})


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]  # MLflow's limit for a param value
