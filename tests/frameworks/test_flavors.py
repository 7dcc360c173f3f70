"""Flavor detection and requirement pins of the tracking helpers (no server needed)."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest

from chiml import tracking
from chiml.lifecycle import flavors
from chiml.lifecycle.model_logging import flavor_of


def test_requirements_pin_what_is_installed_and_take_the_first_installed_alternative() -> None:
    pins = flavors.requirements(("no-such-dist-chiml", "numpy"), "also-missing-chiml")
    assert pins[0] == f"mlflow=={importlib.metadata.version('mlflow')}"
    assert pins[1] == f"numpy=={importlib.metadata.version('numpy')}"
    assert pins[2] == "also-missing-chiml"


def test_sklearn_and_torch_keep_their_flavors() -> None:
    from sklearn.linear_model import LogisticRegression

    assert flavor_of(LogisticRegression()) == "sklearn"
    torch = pytest.importorskip("torch")
    assert flavor_of(torch.nn.Linear(2, 2)) == "pytorch"
    assert flavor_of(object()) is None


def test_boosting_wrappers_are_not_taken_for_sklearn() -> None:
    xgboost = pytest.importorskip("xgboost")
    lightgbm = pytest.importorskip("lightgbm")
    catboost = pytest.importorskip("catboost")
    assert flavor_of(xgboost.XGBClassifier()) == "xgboost"
    assert flavor_of(lightgbm.LGBMClassifier()) == "lightgbm"
    assert flavor_of(catboost.CatBoostClassifier()) == "catboost"


def test_keras_lightning_and_pyfunc() -> None:
    keras = pytest.importorskip("keras")
    lightning = pytest.importorskip("lightning")
    import mlflow.pyfunc

    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(2)])
    assert flavor_of(model) == "keras"
    assert flavor_of(lightning.LightningModule()) == "pytorch"

    class Model(mlflow.pyfunc.PythonModel):
        def predict(self, context: object, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
            return model_input

    assert flavor_of(Model()) == "pyfunc"


def test_threads_follows_the_tuning_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracking.ENV_THREADS, "3")
    assert tracking.threads() == 3
    monkeypatch.setenv(tracking.ENV_THREADS, "junk")
    assert tracking.threads() >= 1
