"""The MLflow image runs the community MLflow chart's migration and server containers against a
real PostgreSQL, and serves a run round trip with artifacts.

The pod below is what community-charts/helm-charts renders for helm/values/mlflow.yaml. Source of
every command (read with the search tool's fetch of community-charts/helm-charts; the pinned chart
1.12.0 is not in that snapshot, its newest tag mlflow-1.11.5 is, and these parts are the same in
the 1.11.x line):
  - charts/mlflow/templates/deployment.yaml: init container "mlflow-db-migration",
    `command: ["python"]`, `args: [/opt/mlflow/migrations.py]`, envFrom the env ConfigMap, env
    PGUSER/PGPASSWORD from backendStore.existingDatabaseSecret, /tmp an emptyDir, the script a
    ConfigMap subPath mount; the server container `command: ["mlflow"]`, `args: [server,
    --host=0.0.0.0, --port=5000, --backend-store-uri=postgresql+psycopg2://,
    --artifacts-destination=..., --serve-artifacts, --workers=2 (extraArgs)]`, readinessProbe
    httpGet /health on the named port "mlflow" (5000).
  - charts/mlflow/templates/configmap.yaml: the env ConfigMap (PGHOST, PGPORT, PGDATABASE,
    MLFLOW_DISABLE_TELEMETRY ...) and migrations.py:
    `utils._initialize_tables(utils.create_sqlalchemy_engine_with_retry("postgresql+psycopg2://"))`.
One deliberate difference: no S3 server runs here, so --artifacts-destination is a mounted
folder instead of s3://chiml-artifacts/mlflow (a separate check shows the image has boto3).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from charts import CONTEXT, REPO
from podman_kubelet import HOST_LOOPBACK, Kubelet, Manifests, PodSpec

from chiml.kube.values import load_values

MIGRATIONS_PY = (
    "from mlflow.store.db import utils\n"
    "import os\n"
    'engine = utils.create_sqlalchemy_engine_with_retry("postgresql+psycopg2://")\n'
    "utils._initialize_tables(engine)\n"
)


def _chart_pod(catalog, postgres, database: str) -> PodSpec:
    values = catalog.apply("mlflow", load_values(REPO / "helm" / "values" / "mlflow.yaml", CONTEXT))
    store = values["backendStore"]
    secret = store["existingDatabaseSecret"]
    image = f"{values['image']['repository']}:{values['image']['tag']}"
    migration = values["initImages"]["mlflowDbMigration"]
    env_cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mlflow-env-configmap"},
              "data": {"PGHOST": store["postgres"]["host"], "PGPORT": str(postgres.port),  # the test server's port
                       "PGDATABASE": database, "MLFLOW_CONFIGURE_LOGGING": "true", "MLFLOW_LOGGING_LEVEL": "INFO",
                       "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}}
    migrations_cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mlflow-migrations"},
                     "data": {"migrations.py": MIGRATIONS_PY}}
    db_env = [
        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": secret["name"], "key": secret["passwordKey"]}}},
        {"name": "PGUSER", "valueFrom": {"secretKeyRef": {"name": secret["name"], "key": secret["usernameKey"]}}},
    ]
    extra_args = [f"--{key}={value}" for key, value in (values.get("extraArgs") or {}).items()]
    spec = {
        "securityContext": values["podSecurityContext"],
        "initContainers": [{
            "name": "mlflow-db-migration",
            "securityContext": values["securityContext"],
            "image": f"{migration['repository']}:{migration['tag']}",
            "env": db_env,
            "envFrom": [{"configMapRef": {"name": "mlflow-env-configmap"}}],
            "command": ["python"],
            "args": ["/opt/mlflow/migrations.py"],
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                             {"name": "migrations-config", "mountPath": "/opt/mlflow/migrations.py",
                              "subPath": "migrations.py", "readOnly": True}],
        }],
        "containers": [{
            "name": "mlflow",
            "securityContext": values["securityContext"],
            "image": image,
            "command": ["mlflow"],
            "args": ["server", "--host=0.0.0.0", "--port=5000", "--backend-store-uri=postgresql+psycopg2://",
                     "--artifacts-destination=/artifacts", "--serve-artifacts", *extra_args],
            "ports": [{"name": "mlflow", "containerPort": 5000, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/health", "port": "mlflow"}},
            "env": [*db_env, {"name": "MLFLOW_VERSION", "value": values["image"]["tag"]},
                    *({"name": k, "value": str(v)} for k, v in (values.get("extraEnvVars") or {}).items())],
            "envFrom": [{"configMapRef": {"name": "mlflow-env-configmap"}}],
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "artifacts", "mountPath": "/artifacts"}],
        }],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "artifacts", "emptyDir": {}},
                    {"name": "migrations-config", "configMap": {"name": "mlflow-migrations"}}],
    }
    return PodSpec("mlflow", spec, Manifests([env_cm, migrations_cm]))


def test_mlflow_chart_pod_migrates_postgres_and_round_trips_a_run(catalog, podman, built, postgres, tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    built("mlflow")
    database = postgres.database("mlflow")
    pod = _chart_pod(catalog, postgres, database)
    values = yaml.safe_load((REPO / "helm" / "values" / "mlflow.yaml").read_text())
    secret = values["backendStore"]["existingDatabaseSecret"]
    kubelet = Kubelet(podman, secrets={secret["name"]: {secret["usernameKey"]: postgres.user,
                                                        secret["passwordKey"]: postgres.password}},
                      hosts={pod.manifests.find("ConfigMap", "mlflow-env-configmap")["data"]["PGHOST"]: HOST_LOOPBACK})
    running = kubelet.run(pod)
    try:
        # the migration created MLflow's schema in PostgreSQL (alembic's head is recorded)
        assert postgres.sql("SELECT count(*) FROM alembic_version", database) == "1"
        port = running.ports["mlflow"][5000]
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        experiment = client.create_experiment("image-test")
        run = client.create_run(experiment)
        client.log_param(run.info.run_id, "lr", "0.1")
        client.log_metric(run.info.run_id, "loss", 0.25, step=3)
        artifact = tmp_path / "weights.txt"
        artifact.write_text("round trip\n")
        client.log_artifact(run.info.run_id, str(artifact))
        client.set_terminated(run.info.run_id)
        fetched = client.get_run(run.info.run_id)
        assert fetched.data.params == {"lr": "0.1"} and fetched.data.metrics == {"loss": 0.25}
        assert fetched.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
        back = client.download_artifacts(run.info.run_id, "weights.txt", str(tmp_path / "down"))
        assert Path(back).read_text() == "round trip\n"
        # the run is in PostgreSQL, not in the container
        assert postgres.sql(f"SELECT key FROM params WHERE run_uuid = '{run.info.run_id}'", database) == "lr"
    finally:
        kubelet.stop(running)


def test_mlflow_image_has_the_s3_and_postgres_clients(podman, built) -> None:
    check = "import boto3, psycopg2, mlflow; print(mlflow.__version__)"
    name, _ = podman.run(built("mlflow"), entrypoint=["python", "-c", check],
                         detach=True)
    try:
        assert podman.wait_exit(name, 120) == 0, podman.logs(name)
        assert podman.logs(name).strip().endswith("3.17.2")
    finally:
        podman.remove(name)
