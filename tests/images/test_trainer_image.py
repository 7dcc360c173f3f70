"""The CPU trainer images run examples as a training Job does: the image's entry point
(`python -m chiml.lifecycle.runner`), the script as the argument, the user's code in /workspace
(an emptyDir the Job's init container fills), the non-root user, a read-only root, and the
environment `chiml train` gives a run (chiml.lifecycle.remote: MLFLOW_TRACKING_URI,
MLFLOW_EXPERIMENT_NAME, MLFLOW_RUN_ID, CHIML_TB_LOGDIR, CHIML_PARAMS), against a real MLflow server.

Every trainer variant `make images` builds (services/images.yaml, `local: true`: what CI builds;
the base and `notebooks`, which holds every framework group) is tested: it imports each framework
of its groups at the pinned version, and runs each of its groups' examples. The variants only the
release workflow builds (one per group, and the CUDA ones) install subsets of the same pins."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from charts import REPO
from podman_kubelet import HOST_LOOPBACK, free_port, wait_http

from chiml.frameworks import GROUPS, group_pins
from chiml.images import load_catalog

TRAINER = load_catalog().get("trainer")
# The trainer image and the variants `make images` builds: (variant, its framework groups).
LOCAL = [(None, ())] + [
    (v.name, tuple(v.args.get("FRAMEWORKS", "").replace(",", " ").split())) for v in TRAINER.variants if v.local
]
# Each group's example (examples/<name>) with few epochs/rounds.
EXAMPLES = {
    "base": ("digits_torch", {"epochs": 2, "hidden": 32}),
    "classic": ("xgboost_tabular", {"rounds": 10}),
    "torch": ("lightning_digits", {"epochs": 2}),
    "tensorflow": ("keras_digits", {"epochs": 2}),
    "jax": ("jax_digits", {"epochs": 2}),
}

# (variant, group): the base image runs the base's example, each built variant its groups'
JOBS = [(variant, group) for variant, groups in LOCAL for group in (groups or ("base",)) if group in EXAMPLES]


def _id(entry: tuple[str | None, object]) -> str:
    return entry[0] or "base"


@pytest.fixture(scope="module")
def mlflow_server() -> Iterator[int]:
    port = free_port()
    store = Path(tempfile.mkdtemp(prefix="chiml-img-mlflow-", dir="/var/tmp"))
    bin_dir = Path(sys.executable).parent
    process = subprocess.Popen(
        [str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{store}/mlflow.db", "--artifacts-destination", str(store / "artifacts"),
         "--allowed-hosts", f"127.0.0.1:{port},{HOST_LOOPBACK}:{port},localhost:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(store)},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 120, alive=lambda: process.poll() is None)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(store, ignore_errors=True)


def test_ci_builds_every_framework_group_into_a_tested_image() -> None:
    """What CI builds (and this file tests) holds every framework group, and runs every group's
    example; the CUDA builds are release-only."""
    built_groups = {g for _, groups in LOCAL for g in groups}
    assert built_groups == set(GROUPS) - {"base"}
    assert {group for _, group in JOBS} == set(EXAMPLES) and set(EXAMPLES) | {"notebooks"} == set(GROUPS)
    for variant in TRAINER.variants:
        if variant.args.get("ACCELERATOR") == "cuda":
            assert not variant.local, f"{variant.name}: a CUDA build is several GB: release workflow only"


@pytest.mark.parametrize("job", JOBS, ids=lambda job: f"{job[0] or 'base'}-{EXAMPLES[job[1]][0]}")
def test_trainer_runs_an_example_as_a_training_job(podman, built, mlflow_server: int,
                                                   job: tuple[str | None, str]) -> None:
    from mlflow.tracking import MlflowClient

    variant, group = job
    image = built("trainer", variant)
    example, params = EXAMPLES[group]
    workspace = podman.tmpdir()  # the Job's emptyDir, filled by its init container
    shutil.copytree(REPO / "examples" / example, workspace, dirs_exist_ok=True)
    for path in [workspace, *workspace.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{mlflow_server}")
    experiment = f"image-trainer-{variant or 'base'}-{example}"
    experiment_id = client.create_experiment(experiment)
    run = client.create_run(experiment_id, tags={"chiml.kind": "train"})
    name, _ = podman.run(
        image,
        args=["train.py"],
        env={
            "MLFLOW_TRACKING_URI": f"http://{HOST_LOOPBACK}:{mlflow_server}",
            "MLFLOW_EXPERIMENT_NAME": experiment,
            "MLFLOW_EXPERIMENT_ID": experiment_id,
            "MLFLOW_RUN_ID": run.info.run_id,
            "CHIML_TB_LOGDIR": "/tmp/tb",
            "CHIML_PARAMS": json.dumps(params),
            "PYTHONUNBUFFERED": "1",
        },
        mounts=[f"{workspace}:/workspace:rw", f"{podman.tmpdir()}:/tmp:rw"],
        user="10001:10001",
        read_only=True,
    )
    try:
        code = podman.wait_exit(name, 600)
        assert code == 0, podman.logs(name)
    finally:
        logs = podman.logs(name)
        podman.remove(name)
    finished = client.get_run(run.info.run_id)
    for key, value in params.items():
        assert finished.data.params[key] == str(value), logs
    assert "val_accuracy" in finished.data.metrics, logs
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert len(history) >= 2 and history[0].step == 0, "val_accuracy must be logged every epoch/round"
    # MLflow 3 keeps a logged model as a LoggedModel of the experiment, linked to its run
    logged = client.search_logged_models(experiment_ids=[experiment_id])
    assert [m.source_run_id for m in logged] == [run.info.run_id], "the model was not logged"


@pytest.mark.parametrize("entry", LOCAL, ids=_id)
def test_trainer_imports_its_frameworks_at_the_pinned_versions(podman, built,
                                                              entry: tuple[str | None, tuple[str, ...]]) -> None:
    """`chiml frameworks list`'s probe (chiml.frameworks.inspect) inside the image."""
    variant, groups = entry
    probe = ("import json; from chiml.frameworks import inspect; "
             f"print('FRAMEWORKS', json.dumps([f.to_json() for f in inspect(groups={('base', *groups)!r})]))")
    name, _ = podman.run(built("trainer", variant), entrypoint=["python", "-c", probe], user="10001:10001",
                         read_only=True, mounts=[f"{podman.tmpdir()}:/tmp:rw"])
    try:
        assert podman.wait_exit(name, 300) == 0, podman.logs(name)
        line = next(x for x in podman.logs(name).splitlines() if x.startswith("FRAMEWORKS "))
    finally:
        podman.remove(name)
    found = {f["name"]: f for f in json.loads(line.removeprefix("FRAMEWORKS "))}
    assert set(found) == {name for group in ("base", *groups) for name in GROUPS[group]}
    pins = {k.lower().replace("_", "-"): v for g in groups for k, v in group_pins(g).items()}
    for framework in found.values():
        assert framework["installed"], f"{framework['name']}: {framework['detail']}"
        pinned = pins.get(framework["name"]) or pins.get(f"{framework['name']}-cpu")
        if pinned and framework["version"]:
            assert framework["version"] == pinned, framework
        assert framework["gpu"] in (False, None), f"a CPU image sees a GPU: {framework}"


def test_cpu_trainer_has_the_cpu_torch_wheel(podman, built) -> None:
    name, _ = podman.run(built("trainer"), entrypoint=["python", "-c",
                         "import torch; print(torch.__version__, torch.version.cuda)"])
    try:
        assert podman.wait_exit(name, 120) == 0, podman.logs(name)
        version, cuda = podman.logs(name).split()[-2:]
        assert version.startswith("2.13.0") and cuda == "None", podman.logs(name)
    finally:
        podman.remove(name)
