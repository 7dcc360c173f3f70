"""The CPU trainer image runs an example as a training Job does: the image's entry point
(`python -m chiml.lifecycle.runner`), the script as the argument, the user's code in /workspace
(read-only), the non-root user, and the environment `chiml train` gives a run
(chiml.lifecycle.train: MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME/ID, MLFLOW_RUN_ID,
CHIML_TB_LOGDIR, CHIML_PARAMS), against a real MLflow server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from charts import REPO
from podman_kubelet import HOST_LOOPBACK, free_port, wait_http


@pytest.fixture
def mlflow_server(container_dir: Path):
    port = free_port()
    store = container_dir / "mlflow"
    store.mkdir()
    bin_dir = Path(sys.executable).parent
    process = subprocess.Popen(
        [str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{store}/mlflow.db", "--artifacts-destination", str(store / "artifacts"),
         "--allowed-hosts", f"127.0.0.1:{port},{HOST_LOOPBACK}:{port},localhost:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(container_dir)},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 120, alive=lambda: process.poll() is None)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_cpu_trainer_runs_an_example_as_a_training_job(podman, built, mlflow_server: int, container_dir: Path) -> None:
    from mlflow.tracking import MlflowClient

    image = built("trainer")
    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{mlflow_server}")
    experiment_id = client.create_experiment("image-trainer")
    run = client.create_run(experiment_id, tags={"chiml.kind": "train"})
    params = {"epochs": 2, "hidden": 32}
    name, _ = podman.run(
        image,
        args=["train.py"],
        env={
            "MLFLOW_TRACKING_URI": f"http://{HOST_LOOPBACK}:{mlflow_server}",
            "MLFLOW_EXPERIMENT_NAME": "image-trainer",
            "MLFLOW_EXPERIMENT_ID": experiment_id,
            "MLFLOW_RUN_ID": run.info.run_id,
            "CHIML_TB_LOGDIR": "/tmp/tb",
            "CHIML_PARAMS": json.dumps(params),
            "PYTHONUNBUFFERED": "1",
        },
        mounts=[f"{REPO / 'examples' / 'digits_torch'}:/workspace:ro", f"{podman.tmpdir()}:/tmp:rw"],
        user="10001:10001",
        read_only=True,
    )
    try:
        code = podman.wait_exit(name, 480)
        assert code == 0, podman.logs(name)
    finally:
        logs = podman.logs(name)
        podman.remove(name)
    finished = client.get_run(run.info.run_id)
    assert finished.data.params["epochs"] == "2"
    assert "val_accuracy" in finished.data.metrics, logs
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [0, 1]
    # MLflow 3 keeps a logged model as a LoggedModel of the experiment, linked to its run
    logged = client.search_logged_models(experiment_ids=[experiment_id])
    assert [m.source_run_id for m in logged] == [run.info.run_id], "the model was not logged"


def test_cpu_trainer_has_the_cpu_torch_wheel(podman, built) -> None:
    name, _ = podman.run(built("trainer"), entrypoint=["python", "-c",
                         "import torch; print(torch.__version__, torch.version.cuda)"])
    try:
        assert podman.wait_exit(name, 120) == 0, podman.logs(name)
        version, cuda = podman.logs(name).split()[-2:]
        assert version.startswith("2.13.0") and cuda == "None", podman.logs(name)
    finally:
        podman.remove(name)
