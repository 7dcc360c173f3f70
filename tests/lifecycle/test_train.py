"""`chiml train` against a real MLflow server: runs, params, metrics, logs, models, failures."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from chiml.errors import ChimlError
from chiml.lifecycle.train import run_training
from tests.lifecycle.conftest import EXAMPLES, LifecyclePlatform

pytestmark = pytest.mark.e2e


def _quiet(stream: str, line: str) -> None:
    pass


def test_example_run_is_tracked_end_to_end(platform: LifecyclePlatform) -> None:
    started: list[str] = []
    result = run_training(
        platform,
        str(EXAMPLES / "tabular_sklearn" / "train.py"),
        {"epochs": 4, "alpha": "0.001"},
        experiment="train-e2e",
        run_name="tabular",
        echo=_quiet,
        on_start=lambda run_id, url: started.append(run_id),
    )
    assert result.status == "FINISHED" and result.exit_code == 0 and started == [result.run_id]
    assert result.run_url.startswith(platform.tracking_uri) and result.run_id in result.run_url
    client = MlflowClient(platform.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "tabular"
    # --param values arrive typed (alpha as float), search-space defaults fill the rest.
    assert run.data.params["epochs"] == "4" and float(run.data.params["alpha"]) == 0.001
    assert run.data.params["penalty"] == "l2"
    history = client.get_metric_history(result.run_id, "val_accuracy")
    assert [m.step for m in history] == [0, 1, 2, 3]
    assert run.data.tags["chiml.exit_code"] == "0"
    stdout = Path(client.download_artifacts(result.run_id, "logs/stdout.txt"))
    assert "val_accuracy=" in stdout.read_text()
    # The model is in MLflow's format, loads back and predicts like the script's model would.
    assert result.model_uri and result.model_uri.startswith("models:/m-")
    mlflow.set_tracking_uri(platform.tracking_uri)
    model = mlflow.sklearn.load_model(result.model_uri)
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    assert (model.predict(features) == labels).mean() > 0.9
    info = mlflow.models.get_model_info(result.model_uri)
    assert info.signature is not None and info.saved_input_example_info is not None
    # TensorBoard got the same curves under <logdir>/<experiment>/<run name>.
    tb_dir = Path(platform.tensorboard_logdir) / "train-e2e" / "tabular"
    assert Path(result.tensorboard_dir) == tb_dir and list(tb_dir.glob("events.out.tfevents.*"))


def test_failing_script_marks_the_run_failed_and_keeps_its_stderr(
    platform: LifecyclePlatform, scripts: Path
) -> None:
    script = scripts / "boom.py"
    script.write_text(
        "import sys\nfrom chiml import tracking as ct\n"
        "ct.log_metrics(step=0, loss=1.5)\nprint('about to fail', file=sys.stderr)\nraise SystemExit(3)\n"
    )
    lines: list[tuple[str, str]] = []
    result = run_training(platform, str(script), {}, echo=lambda s, line: lines.append((s, line)))
    assert (result.status, result.exit_code, result.model_uri) == ("FAILED", 3, None)
    assert ("stderr", "about to fail\n") in lines
    client = MlflowClient(platform.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FAILED" and run.data.tags["chiml.exit_code"] == "3"
    assert run.data.metrics["loss"] == 1.5
    stderr = Path(client.download_artifacts(result.run_id, "logs/stderr.txt")).read_text()
    assert "about to fail" in stderr


def test_function_target_and_plain_mlflow_calls(platform: LifecyclePlatform, scripts: Path) -> None:
    (scripts / "job.py").write_text(
        "import mlflow\n"
        "def fit():\n"
        "    mlflow.log_param('direct', 'yes')\n"  # plain MLflow calls land in chiml's run too
        "    return 0.25\n"
    )
    result = run_training(platform, "job.py:fit", {}, echo=_quiet, cwd=scripts)
    assert result.status == "FINISHED"
    run = MlflowClient(platform.tracking_uri).get_run(result.run_id)
    assert run.data.params["direct"] == "yes" and run.data.metrics["objective"] == 0.25


def test_timeout_kills_the_script_and_the_run_is_closed(platform: LifecyclePlatform, scripts: Path) -> None:
    (scripts / "slow.py").write_text("import time\ntime.sleep(60)\n")
    result = run_training(platform, str(scripts / "slow.py"), {}, echo=_quiet, timeout=3)
    assert result.status == "KILLED"
    assert MlflowClient(platform.tracking_uri).get_run(result.run_id).info.status == "KILLED"


def test_bad_target_creates_no_run(platform: LifecyclePlatform) -> None:
    client = MlflowClient(platform.tracking_uri)
    experiment = client.get_experiment_by_name("Default")
    before = len(client.search_runs([experiment.experiment_id])) if experiment else 0
    with pytest.raises(ChimlError, match="no such script"):
        run_training(platform, "does/not/exist.py", {})
    after = len(client.search_runs([experiment.experiment_id])) if experiment else 0
    assert before == after


def test_unreachable_platform_is_one_clear_error(platform: LifecyclePlatform, tmp_path: Path) -> None:
    from tests.conftest import free_port

    platform.tracking_uri = f"http://127.0.0.1:{free_port()}"
    script = tmp_path / "s.py"
    script.write_text("print(1)\n")
    with pytest.raises(ChimlError, match="not reachable"):
        run_training(platform, str(script), {})


def test_torch_model_signature_and_predictions(platform: LifecyclePlatform) -> None:
    result = run_training(
        platform, str(EXAMPLES / "digits_torch" / "train.py"), {"epochs": 3}, echo=_quiet, gpu=False
    )
    assert result.status == "FINISHED" and result.model_uri
    mlflow.set_tracking_uri(platform.tracking_uri)
    model = mlflow.pyfunc.load_model(result.model_uri)
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    logits = np.asarray(model.predict(features.astype(np.float32)))
    assert logits.shape == (len(labels), 10)
    assert (logits.argmax(axis=1) == labels).mean() >= 0.9
    schema = model.metadata.get_input_schema().to_dict()
    assert list(schema[0]["tensor-spec"]["shape"]) == [-1, 64]
