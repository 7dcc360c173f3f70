"""The trainer image runs the pod of the training Job chiml builds, as a kubelet would: the Job
builder's pod spec for an example (chiml.lifecycle.remote.build), its code ConfigMap unpacked by
the init container, the container's command, args and env (secret references resolved), under the
pod's security context; the run it was handed ends FINISHED in MLflow with its metrics and output,
closed by the pod itself.

Needs the trainer image `make images` builds from this checkout (CHIML_IMAGE_TESTS=1).
"""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from charts import REPO
from podman_kubelet import HOST_LOOPBACK, Kubelet, Manifests, PodSpec
from test_trainer_image import mlflow_server  # noqa: F401  (the same MLflow server fixture)

NAMESPACE = "chiml"


class JobKubelet(Kubelet):
    """The pod runner, for a Job's pod: a ConfigMap's binaryData becomes files too (the code archive),
    and the container runs to completion (a Job's pod has no readiness probe)."""

    def _volume_dirs(self, pod: PodSpec) -> dict[str, tuple[Path, bool]]:
        dirs = super()._volume_dirs(pod)
        for volume in pod.spec.get("volumes", []):
            if "configMap" in volume:
                config_map = pod.manifests.find("ConfigMap", volume["configMap"]["name"]) or {}
                folder, _ = dirs[volume["name"]]
                for key, data in (config_map.get("binaryData") or {}).items():
                    (folder / key).write_bytes(base64.b64decode(data))
                    (folder / key).chmod(0o644)
        return dirs

    def complete(self, pod: PodSpec, timeout: float) -> tuple[int, str]:
        """Init containers, then the container to its exit; (exit status, its log)."""
        dirs = self._volume_dirs(pod)
        for init in pod.spec.get("initContainers", []):
            name, _ = self._start(pod, init, dirs, detach=True)
            code = self.podman.wait_exit(name, self.ready_timeout)
            if code != 0:
                return code, f"init container {init['name']}: {self.podman.logs(name)}"
        name, _ = self._start(pod, pod.spec["containers"][0], dirs, detach=True)
        try:
            return self.podman.wait_exit(name, timeout), self.podman.logs(name)
        finally:
            self.podman.remove(name)


def test_trainer_image_runs_the_training_jobs_pod(podman: Any, built: Any, mlflow_server: int) -> None:  # noqa: F811
    from mlflow.tracking import MlflowClient

    from chiml.config import ChimlConfig
    from chiml.kube import incluster, jobs
    from chiml.lifecycle.cluster import ClusterSite
    from chiml.lifecycle.remote import build

    image = built("trainer")
    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{mlflow_server}")
    experiment_id = client.create_experiment("image-trainer-job")
    run = client.create_run(experiment_id, tags={"chiml.kind": "train"})  # what the laptop creates
    helm = REPO / "helm"
    logs = incluster.tensorboard_logs(helm, NAMESPACE)
    # the pod reaches the test's MLflow server where a cluster's pod reaches the in-cluster Service
    site = ClusterSite(api=None, namespace=NAMESPACE, mlflow_uri=f"http://{HOST_LOOPBACK}:{mlflow_server}",
                       logs=logs, optuna=incluster.optuna_database(helm, NAMESPACE), helm_dir=helm)
    plan = build(SimpleNamespace(config=ChimlConfig()), site, str(REPO / "examples" / "digits_torch" / "train.py"),
                 {"epochs": 2, "hidden": 32}, experiment="image-trainer-job", experiment_id=experiment_id,
                 run_id=run.info.run_id, run_name=None, args=[], gpus=0, timeout=None, cwd=REPO, image=image)
    objects = jobs.objects(plan)
    job = objects[0]
    pod = PodSpec(plan.name, job["spec"]["template"]["spec"], Manifests(objects))
    # the S3 keys the Job refers to; the S3 endpoint answers nothing here (TensorBoard events are
    # best effort: the run goes on without them)
    s3_host = logs.endpoint.split("//", 1)[1].rsplit(":", 1)[0]
    kubelet = JobKubelet(podman, secrets={logs.access_key.secret: {logs.access_key.key: "test-key",
                                                                   logs.secret_key.key: "test-secret"}},
                         hosts={s3_host: HOST_LOOPBACK})
    code, output = kubelet.complete(pod, timeout=600)
    assert code == 0, output
    finished = client.get_run(run.info.run_id)
    assert finished.info.status == "FINISHED", output  # closed by the pod's supervisor
    assert finished.data.params["epochs"] == "2" and "val_accuracy" in finished.data.metrics
    assert finished.data.tags["chiml.exit_code"] == "0"
    stored = {item.path for item in client.list_artifacts(run.info.run_id, "logs")}
    assert "logs/stdout.txt" in stored
    logged = client.search_logged_models(experiment_ids=[experiment_id])
    assert [m.source_run_id for m in logged] == [run.info.run_id], "the model was not logged"
