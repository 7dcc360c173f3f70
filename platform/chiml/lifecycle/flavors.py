"""MLflow flavors for the framework groups: which flavor a model object belongs to, and how to log it.

:func:`chiml.lifecycle.model_logging.log_model` asks :func:`detect` first; torch and
scikit-learn keep their own loggers in ``model_logging``. Detection looks at ``sys.modules`` only, so asking never
imports a framework the script did not import itself (importing TensorFlow costs seconds).

Every logger infers the signature from the model's own answer on ``input_example`` and passes
exact ``pip_requirements`` from this environment: MLflow's requirement inference reloads the
model in a fresh interpreter, seconds per call, too slow inside tuning.

What the pyfunc runtime serves for each flavor (all of them load in the platform environment):

* ``keras`` (Keras 3 on the TensorFlow backend), logged in the ``tensorflow`` flavor:
  ``model.predict`` outputs (e.g. class probabilities).
* ``xgboost`` / ``lightgbm`` / ``catboost``: the model's ``predict`` (labels for classifiers;
  a native Booster returns what ``Booster.predict`` does).
* ``transformers``: a ``Pipeline`` logged in the transformers flavor; pyfunc answers with the
  pipeline's output (labels and scores for text classification).
* ``pyfunc``: an ``mlflow.pyfunc.PythonModel`` (how JAX/Flax models are logged: MLflow has no
  JAX flavor, so the model carries its parameters as numpy arrays and its ``predict`` runs the
  jitted forward function).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np


def requirements(*packages: str | tuple[str, ...]) -> list[str]:
    """Exact pins of ``mlflow`` and ``packages`` as installed here.

    A tuple names alternatives that provide the same module (``("xgboost", "xgboost-cpu")``):
    the first one installed is pinned.
    """
    pins = []
    for entry in ("mlflow", *packages):
        names = entry if isinstance(entry, tuple) else (entry,)
        for name in names:
            try:
                pins.append(f"{name}=={version(name)}")
                break
            except PackageNotFoundError:
                continue
        else:
            pins.append(names[0])
    return pins


def _isinstance(model: Any, module: str, attribute_path: str) -> bool:
    """``isinstance(model, module.attribute_path)`` when ``module`` is already imported."""
    loaded = sys.modules.get(module)
    if loaded is None:
        return False
    target: Any = loaded
    try:
        for part in attribute_path.split("."):
            target = getattr(target, part)
    except AttributeError:
        return False
    return isinstance(model, target)


def detect(model: Any) -> str | None:
    """The flavor :func:`log` uses for ``model``, or None when this module has none for it.

    Order matters: the scikit-learn wrappers of XGBoost and LightGBM are scikit-learn
    estimators too, and a Keras 3 model on the torch backend is a torch module.
    """
    if _isinstance(model, "keras", "Model"):
        return "keras"
    if _isinstance(model, "xgboost", "Booster") or _isinstance(model, "xgboost", "XGBModel"):
        return "xgboost"
    if _isinstance(model, "lightgbm", "Booster") or _isinstance(model, "lightgbm", "LGBMModel"):
        return "lightgbm"
    if _isinstance(model, "catboost", "CatBoost"):
        return "catboost"
    if _isinstance(model, "transformers", "Pipeline"):
        return "transformers"
    if _isinstance(model, "mlflow.pyfunc", "PythonModel"):
        return "pyfunc"
    return None


def _signature(example: Any, answer: Callable[[Any], Any]) -> Any:
    from mlflow.models import infer_signature

    return infer_signature(example, np.asarray(answer(example)))


def _predict_xgboost(model: Any) -> Callable[[Any], Any]:
    import xgboost

    if isinstance(model, xgboost.Booster):
        return lambda x: model.predict(xgboost.DMatrix(x))
    return model.predict


def log(flavor: str, model: Any, example: Any, name: str, signature: Any, kwargs: dict[str, Any]) -> Any:
    """Log ``model`` in ``flavor`` (one of :func:`detect`'s answers); returns MLflow's ModelInfo."""
    if example is not None and flavor != "transformers":
        example = np.asarray(example)
    if flavor == "keras":
        # mlflow.tensorflow, not mlflow.keras: MLflow 3.17's keras flavor writes the input example
        # before it creates the model folder (FileNotFoundError whenever an example is given);
        # the tensorflow flavor saves Keras 3 models in Keras' own format and serves them alike.
        import mlflow.tensorflow

        answer: Callable[[Any], Any] = lambda x: model.predict(x, verbose=0)  # noqa: E731
        logger: Any = mlflow.tensorflow.log_model
        reqs = requirements(("tensorflow", "tensorflow-cpu"), "keras", "numpy")
    elif flavor == "xgboost":
        import mlflow.xgboost

        answer, logger = _predict_xgboost(model), mlflow.xgboost.log_model
        reqs = requirements(("xgboost", "xgboost-cpu"), "numpy", "scikit-learn")
        # JSON is XGBoost's portable format (ubj/pickle are not readable across versions).
        kwargs.setdefault("model_format", "json")
    elif flavor == "lightgbm":
        import mlflow.lightgbm

        answer, logger = model.predict, mlflow.lightgbm.log_model
        reqs = requirements("lightgbm", "numpy", "scikit-learn")
    elif flavor == "catboost":
        import mlflow.catboost

        answer, logger = model.predict, mlflow.catboost.log_model
        reqs = requirements("catboost", "numpy")
    elif flavor == "transformers":
        import mlflow.transformers

        kwargs.setdefault("pip_requirements", requirements("transformers", "torch", "tokenizers", "numpy"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # transformers' own signature inference runs the pipeline on the example.
            return mlflow.transformers.log_model(
                transformers_model=model, name=name, signature=signature, input_example=example, **kwargs
            )
    elif flavor == "pyfunc":
        import mlflow.pyfunc

        answer = lambda x: model.predict(None, x)  # noqa: E731
        reqs = requirements("numpy", *getattr(model, "requirements", ()))
        kwargs.setdefault("pip_requirements", reqs)
        if example is not None and signature is None:
            signature = _signature(example, answer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mlflow.pyfunc.log_model(
                name=name, python_model=model, signature=signature, input_example=example, **kwargs
            )
    else:
        raise ValueError(f"unknown flavor {flavor!r}")
    if example is not None and signature is None:
        signature = _signature(example, answer)
    kwargs.setdefault("pip_requirements", reqs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return logger(model, name=name, signature=signature, input_example=example, **kwargs)
