"""The model registry against a real MLflow server: register, list, describe, promote, archive."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from chiml.errors import InvalidInputError, NotFoundError
from chiml.lifecycle.registry import ModelRegistry
from chiml.lifecycle.train import run_training
from chiml.lifecycle.tune import run_study
from tests.lifecycle.conftest import EXAMPLES, LifecyclePlatform

pytestmark = pytest.mark.e2e

TABULAR = str(EXAMPLES / "tabular_sklearn" / "train.py")


def _quiet(stream: str, line: str) -> None:
    pass


def test_register_promote_archive(platform: LifecyclePlatform, scripts: Path) -> None:
    # One run registered twice (by run id, then by its model URI) gives two versions: enough
    # to see aliases move, without paying for a second training run.
    first = run_training(platform, TABULAR, {"epochs": 2}, echo=_quiet)
    second = first
    registry = ModelRegistry(platform)
    v1 = registry.register(first.run_id, "tabular-reg")
    v2 = registry.register(first.model_uri, "tabular-reg", description="again")
    assert (v1.version, v2.version) == ("1", "2") and v1.run_id == v2.run_id == first.run_id
    assert v1.source == v2.source == first.model_uri and v2.description == "again"

    promoted = registry.promote("tabular-reg", 1, "production")
    assert promoted.aliases == ["production"]
    registry.promote("tabular-reg", 2, "production")  # the alias moves
    model = registry.describe("tabular-reg")
    assert model.aliases == {"production": "2"} and [v.version for v in model.versions] == ["1", "2"]
    assert [v.aliases for v in model.versions] == [[], ["production"]]
    assert "tabular-reg" in {m.name for m in registry.list()}

    # models:/name@alias resolves to that version's model, which predicts like the run's model.
    mlflow.set_tracking_uri(platform.tracking_uri)
    from sklearn.datasets import load_breast_cancer

    features, _ = load_breast_cancer(return_X_y=True)
    by_alias = mlflow.pyfunc.load_model("models:/tabular-reg@production").predict(features)
    by_run = mlflow.sklearn.load_model(second.model_uri).predict(features)
    assert np.array_equal(by_alias, by_run)

    archived = registry.archive("tabular-reg", 2)
    assert archived.archived and archived.aliases == []
    assert registry.describe("tabular-reg").aliases == {}
    with pytest.raises(InvalidInputError, match="archived"):
        registry.promote("tabular-reg", 2, "production")


def test_register_a_study_means_its_best_trial(platform: LifecyclePlatform) -> None:
    study = run_study(
        platform, TABULAR, trials=2, workers=1, study_name="reg-study", metric="val_accuracy",
        direction="maximize", params={"epochs": 2}, pruner="none",
    )  # fmt: skip
    version = ModelRegistry(platform).register(study.parent_run_id, "tabular-best")
    assert version.run_id == study.best_run_id and version.source == study.model_uri


def test_registry_errors_are_one_line(platform: LifecyclePlatform, scripts: Path) -> None:
    registry = ModelRegistry(platform)
    (scripts / "nomodel.py").write_text("print('no model here')\n")
    run = run_training(platform, str(scripts / "nomodel.py"), {}, echo=_quiet)
    with pytest.raises(NotFoundError, match="logged no model"):
        registry.register(run.run_id, "nothing")
    with pytest.raises(NotFoundError, match="no MLflow run"):
        registry.register("0" * 32, "nothing")
    with pytest.raises(InvalidInputError, match="neither a run id"):
        registry.register("not-a-run", "nothing")
    with pytest.raises(NotFoundError, match="no registered model"):
        registry.describe("never-registered")
    with pytest.raises(InvalidInputError, match="invalid model name"):
        registry.register(run.run_id, "a/b")
