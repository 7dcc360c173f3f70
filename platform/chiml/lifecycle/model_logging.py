"""``log_model``: a model in MLflow's format, with a signature and exact requirements.

torch and scikit-learn have their loggers here; the framework groups' flavors (Keras,
XGBoost, LightGBM, CatBoost, transformers, pyfunc) are in :mod:`chiml.lifecycle.flavors`.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import optuna

from chiml.errors import NotSupportedError
from chiml.lifecycle import flavors
from chiml.lifecycle.context import RunContext, current

_FRAMEWORK_FLAVORS = ("keras", "xgboost", "lightgbm", "catboost", "transformers", "pyfunc")


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
    ctx = current()
    if ctx.trial is not None and not _improves(ctx):
        return None
    if ctx.mlflow_run_id() is None:
        return None
    flavor = flavor_of(model)
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
    ctx.model_uri = str(info.model_uri)
    import mlflow

    mlflow.set_tag("chiml.model_uri", info.model_uri)
    return ctx.model_uri


def _improves(ctx: RunContext) -> bool:
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


def flavor_of(model: Any) -> str | None:
    """The MLflow flavor chiml logs ``model`` in (None: not one it knows)."""
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
    # Exact pins given: MLflow's inference would load the model in a fresh interpreter.
    kwargs.setdefault("pip_requirements", flavors.requirements("torch", "numpy"))
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
    kwargs.setdefault("pip_requirements", flavors.requirements("scikit-learn", "numpy", "skops"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.sklearn.log_model(model, name=name, signature=signature, input_example=example, **kwargs)
