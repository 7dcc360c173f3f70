"""Unit tests of the lifecycle's pure pieces: params, search spaces, targets, storage, TB writer."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from chiml import tracking as ct
from chiml.cli.train import parse_params
from chiml.errors import ChimlError, InvalidInputError
from chiml.lifecycle import context
from chiml.lifecycle.context import RunContext
from chiml.lifecycle.storage import open_storage
from chiml.lifecycle.target import resolve
from chiml.lifecycle.tbwriter import TBWriter


@pytest.fixture(autouse=True)
def fresh_context(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts in plain mode with no tracking and its own TensorBoard dir."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", ct.ENV_PARAMS, ct.ENV_DEVICE):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(ct.ENV_TB_LOGDIR, str(tmp_path / "tb"))
    monkeypatch.setattr(context, "_current", None)


def test_parse_params_reads_json_values_and_text() -> None:
    assert parse_params(["epochs=5", "lr=1e-3", "opt=adam", "flag=true", "sizes=[1,2]", "eq=a=b"]) == {
        "epochs": 5, "lr": 0.001, "opt": "adam", "flag": True, "sizes": [1, 2], "eq": "a=b",
    }  # fmt: skip
    with pytest.raises(ChimlError, match="KEY=VALUE"):
        parse_params(["novalue"])


def test_params_defaults_outside_tuning() -> None:
    values = ct.params(
        epochs=3,
        lr=ct.float_range(1e-4, 1e-2, log=True),
        hidden=ct.int_range(10, 30),
        arch=ct.choice(["mlp", "cnn"]),
        dropout=ct.float_range(0.0, 0.5, default=0.2),
    )
    assert values == {"epochs": 3, "lr": pytest.approx(1e-3), "hidden": 20, "arch": "mlp", "dropout": 0.2}
    assert ct.mode() == "plain" and not ct.in_trial() and not ct.should_prune()


def test_params_overrides_are_coerced_to_the_default_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ct.ENV_PARAMS, json.dumps({"epochs": "7", "lr": 1, "extra": "x", "flag": "false"}))
    values = ct.params(epochs=3, lr=ct.float_range(1e-4, 1e-2), flag=True)
    assert values == {"epochs": 7, "lr": 1.0, "flag": False, "extra": "x"}
    assert isinstance(values["lr"], float) and isinstance(values["epochs"], int)


def test_params_override_of_wrong_type_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ct.ENV_PARAMS, json.dumps({"epochs": "many"}))
    with pytest.raises(InvalidInputError, match="epochs='many' is not a int"):
        ct.params(epochs=3)


def test_space_validation() -> None:
    with pytest.raises(InvalidInputError):
        ct.float_range(1.0, 1.0)
    with pytest.raises(InvalidInputError):
        ct.choice([])


def test_params_in_a_trial_are_suggested_within_the_space() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(10):
        trial = study.ask()
        context.replace(RunContext(mode="trial", tracking=False, overrides={"fixed": 9}, tb_logdir=None, trial=trial))
        values = ct.params(lr=ct.float_range(0.1, 0.2), n=ct.int_range(1, 3), fixed=1, arch=ct.choice(["a", "b"]))
        assert 0.1 <= values["lr"] <= 0.2 and values["n"] in (1, 2, 3) and values["fixed"] == 9
        assert trial.params["lr"] == values["lr"]  # what the script got is what Optuna recorded
        seen.add(values["arch"])
        study.tell(trial, values["lr"])
    assert seen == {"a", "b"}


def test_metric_of_a_trial_reaches_optuna_as_intermediate_values() -> None:
    study = optuna.create_study()
    trial = study.ask()
    context.replace(RunContext(mode="trial", tracking=False, overrides={}, tb_logdir=None, trial=trial, metric="loss"))
    ct.log_metrics(step=0, loss=3.0, other=1.0)
    ct.log_metrics(step=1, loss=2.0)
    assert context.current().objective == 2.0
    study.tell(trial, 2.0)
    assert study.trials[0].intermediate_values == {0: 3.0, 1: 2.0}


def test_resolve_targets(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("import sys\nRESULT = sys.argv[1:]\n")
    target = resolve("job.py", cwd=tmp_path)
    assert target.script == script and target.label == "job"
    target.invoke(["a"])
    (tmp_path / "mod.py").write_text("def fit():\n    return 0.5\n")
    function = resolve("mod.py:fit", cwd=tmp_path)
    assert function.invoke() == 0.5
    for bad, message in (("", "no target"), ("nope.py", "no such script"), ("missing_mod_xyz:fit", "not found")):
        with pytest.raises(ChimlError, match=message):
            resolve(bad, cwd=tmp_path)


def test_script_exit_status(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "bad.py").write_text("import sys\nsys.exit(3)\n")
    resolve("ok.py", cwd=tmp_path).invoke()
    with pytest.raises(SystemExit) as exc:
        resolve("bad.py", cwd=tmp_path).invoke()
    assert exc.value.code == 3


def test_open_storage_journal_is_shared_between_handles(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "studies.journal"
    first = optuna.create_study(study_name="s", storage=open_storage(str(path)))
    first.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    again = optuna.load_study(study_name="s", storage=open_storage(str(path)))
    assert len(again.trials) == 3 and path.is_file()


def test_open_storage_database_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="db", storage=open_storage(url))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="db", storage=url).trials) == 2


def test_tbwriter_scalars_and_hparams_are_read_by_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = TBWriter(tmp_path / "run")
    for step in range(3):
        writer.scalar("loss", 1.0 / (step + 1), step=step)
    writer.hparams({"lr": 0.01, "arch": "mlp", "flag": True})
    writer.close()
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("loss")] == [(0, 1.0), (1, 0.5), (2, 0.3333)]
    from tensorboard.plugins.hparams import metadata

    plugin = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(plugin[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["lr"].number_value == 0.01 and start.hparams["arch"].string_value == "mlp"
    experiment = metadata.parse_experiment_plugin_data(plugin[metadata.EXPERIMENT_TAG])
    assert [m.name.tag for m in experiment.metric_infos] == ["loss"]


def test_declared_objective_is_read_without_running_the_script(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "raise SystemExit('must not run')\n"
        "from chiml import tracking as ct\n"
        "def main():\n    ct.objective('val_accuracy', direction='maximize')\n"
    )
    assert resolve("train.py", cwd=tmp_path).declared_objective() == ("val_accuracy", "maximize")
    (tmp_path / "mod.py").write_text("from chiml.lifecycle.tracking import objective\nobjective('loss')\n")
    assert resolve("mod.py:fit", cwd=tmp_path).declared_objective() == ("loss", None)
    (tmp_path / "none.py").write_text("print('no declaration')\n")
    assert resolve("none.py", cwd=tmp_path).declared_objective() is None


def test_objective_sets_the_metric_unless_given() -> None:
    ct.objective("val_accuracy", "maximize")
    assert context.current().metric == "val_accuracy"
    with pytest.raises(InvalidInputError, match="direction"):
        ct.objective("x", "up")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "nope.py"], "nope.py: no such script"),
        (["train", "job.py", "--param", "novalue"], "expected KEY=VALUE"),
        (["tune", "job.py", "--sampler", "annealing"], "unknown sampler 'annealing'"),
        (["tune", "job.py", "--trials", "0"], "--trials must be at least 1"),
    ],
)
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "job.py").write_text("print('hi')\n")
    env = {**os.environ, "CHIML_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "chiml"), *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "studies").exists()


def test_training_config_defaults_and_validation() -> None:
    from chiml.config import parse_config
    from chiml.errors import ConfigError

    training = parse_config({"training": {"tune_workers": 2, "tune_pruner": "hyperband"}}).training
    assert (training.tune_workers, training.tune_sampler, training.tune_pruner) == (2, "tpe", "hyperband")
    with pytest.raises(ConfigError, match=r"training\.tune_sampler"):
        parse_config({"training": {"tune_sampler": "annealing"}})
