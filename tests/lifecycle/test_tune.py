"""`chiml tune` against a real MLflow server and a real journal storage."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from chiml.errors import ChimlError
from chiml.lifecycle.storage import open_storage
from chiml.lifecycle.tune import StudyProgress, run_study
from tests.lifecycle.conftest import EXAMPLES, LifecyclePlatform

pytestmark = pytest.mark.e2e

QUADRATIC = """
from chiml import tracking as ct
p = ct.params(x=ct.float_range(-4.0, 4.0), steps=3)
for step in range(p["steps"]):
    ct.log_metrics(step=step, loss=(p["x"] - 1.0) ** 2 + 1.0 / (step + 1))
    if ct.should_prune():
        raise ct.Pruned()
"""


def _child_runs(platform: LifecyclePlatform, parent: str) -> list:
    client = MlflowClient(platform.tracking_uri)
    experiment = client.get_run(parent).info.experiment_id
    return client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'")


def test_study_with_two_workers_child_runs_and_resume(platform: LifecyclePlatform, scripts: Path) -> None:
    (scripts / "quad.py").write_text(QUADRATIC)
    snapshots: list[StudyProgress] = []
    result = run_study(
        platform, str(scripts / "quad.py"), trials=4, workers=2, study_name="quad", metric="loss",
        pruner="hyperband", seed=3, progress=snapshots.append,
    )  # fmt: skip
    assert result.n_complete + result.n_pruned == 4 and result.n_failed == 0
    assert snapshots and max(s.workers for s in snapshots) == 2
    study = optuna.load_study(study_name="quad", storage=open_storage(platform.optuna_storage))
    assert study.best_value == result.best_value and study.best_params == result.best_params
    # Every trial is an MLflow child run with its params and its metric curve.
    children = _child_runs(platform, result.parent_run_id)
    assert len(children) == 4
    by_trial = {int(r.data.tags["chiml.trial"]): r for r in children}
    for trial in study.trials:
        run = by_trial[trial.number]
        assert float(run.data.params["x"]) == trial.params["x"]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert run.data.metrics["loss"] == pytest.approx(trial.value)
    # Trials ran in two different worker processes.
    assert len({t.user_attrs["chiml.worker_pid"] for t in study.trials}) == 2
    # Per-trial TensorBoard dirs under <logdir>/<experiment>/<study>/.
    assert len(list((Path(platform.tensorboard_logdir) / "Default" / "quad").glob("trial-*"))) == 4
    parent = MlflowClient(platform.tracking_uri).get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["chiml.best_trial"] == str(result.best_trial)

    # Resuming by name continues the same study and the same parent run, with its settings.
    again = run_study(platform, str(scripts / "quad.py"), trials=2, workers=1, study_name="quad")
    assert again.n_trials == 6 and again.parent_run_id == result.parent_run_id
    assert len(_child_runs(platform, result.parent_run_id)) == 6
    assert study.user_attrs["chiml.pruner"] == "hyperband"


def test_crashed_worker_costs_one_trial_not_the_study(platform: LifecyclePlatform, scripts: Path) -> None:
    marker = scripts / "crashed-once"
    (scripts / "crashy.py").write_text(
        "import os, signal\nfrom chiml import tracking as ct\n"
        "p = ct.params(x=ct.float_range(0.0, 1.0))\n"
        f"if not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "ct.report(p['x'])\n"
    )
    result = run_study(platform, str(scripts / "crashy.py"), trials=3, workers=2, study_name="crashy")
    assert marker.exists() and result.worker_restarts == 1
    assert result.n_complete == 3 and result.n_failed == 1
    study = optuna.load_study(study_name="crashy", storage=open_storage(platform.optuna_storage))
    crashed = [t for t in study.trials if t.user_attrs.get("chiml.crashed")]
    assert len(crashed) == 1 and crashed[0].state == optuna.trial.TrialState.FAIL
    # The dead worker's child run is closed, not left RUNNING.
    run = MlflowClient(platform.tracking_uri).get_run(crashed[0].user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED"


def test_best_trial_model_is_logged(platform: LifecyclePlatform) -> None:
    result = run_study(
        platform, str(EXAMPLES / "tabular_sklearn" / "train.py"), trials=3, workers=2, study_name="tab",
        metric="val_accuracy", direction="maximize", params={"epochs": 3}, pruner="none",
    )  # fmt: skip
    assert result.n_complete == 3 and result.best_value > 0.8
    assert result.model_uri and result.best_run_id
    client = MlflowClient(platform.tracking_uri)
    model = client.get_logged_model(result.model_uri.removeprefix("models:/"))
    assert model.source_run_id == result.best_run_id
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["chiml.best_model_uri"] == result.model_uri
    assert parent.data.metrics["best_value"] == pytest.approx(result.best_value)
    # --param fixed epochs for every trial.
    assert {r.data.params["epochs"] for r in _child_runs(platform, result.parent_run_id)} == {"3"}


def test_failing_trials_are_reported(platform: LifecyclePlatform, scripts: Path) -> None:
    (scripts / "broken.py").write_text("raise RuntimeError('bad data')\n")
    with pytest.raises(ChimlError, match="no trial completed"):
        run_study(platform, str(scripts / "broken.py"), trials=2, workers=1, study_name="broken")
    study = optuna.load_study(study_name="broken", storage=open_storage(platform.optuna_storage))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    parent = study.user_attrs["chiml.mlflow_parent_run_id"]
    assert MlflowClient(platform.tracking_uri).get_run(parent).info.status == "FAILED"


def test_bad_settings_fail_before_anything_is_created(platform: LifecyclePlatform, scripts: Path) -> None:
    (scripts / "quad.py").write_text(QUADRATIC)
    with pytest.raises(ChimlError, match="unknown sampler"):
        run_study(platform, str(scripts / "quad.py"), trials=1, study_name="s1", sampler="annealing")
    with pytest.raises(ChimlError, match="no such script"):
        run_study(platform, str(scripts / "missing.py"), trials=1, study_name="s2")
    storage = open_storage(platform.optuna_storage)
    assert not {s.study_name for s in optuna.get_all_study_summaries(storage)} & {"s1", "s2"}
    run_study(platform, str(scripts / "quad.py"), trials=1, study_name="s3", metric="loss")
    with pytest.raises(ChimlError, match="cannot resume it to maximize"):
        run_study(platform, str(scripts / "quad.py"), trials=1, study_name="s3", direction="maximize")
