"""What the values files of upstream charts must say, checked against each other and against the
Secrets `chiml up` generates (the upstream charts are not rendered offline: their keys were checked
at the pinned chart versions, see the comments in helm/values/)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from chiml.kube import secrets
from chiml.kube.releases import load_releases

REPO = Path(__file__).resolve().parents[2]
HELM_DIR = REPO / "helm"


def values(name: str) -> dict[str, Any]:
    return yaml.safe_load((HELM_DIR / "values" / f"{name}.yaml").read_text())


def generated() -> dict[str, secrets.GeneratedSecret]:
    return {s.name: s for s in secrets.generate("chiml")}


def test_mlflow_migrates_the_database_with_the_server_image():
    """The chart's migration init container otherwise runs the chart's own MLflow (its appVersion)."""
    doc = values("mlflow")
    migration = doc["initImages"]["mlflowDbMigration"]
    assert (migration["repository"], str(migration["tag"])) == (doc["image"]["repository"], str(doc["image"]["tag"]))


def test_seaweedfs_serves_s3_only_from_the_authenticated_filer_gateway():
    doc = values("seaweedfs")
    # the separate gateway would take over the seaweedfs-s3 Service, without authentication by default
    assert doc["s3"]["enabled"] is False
    assert doc["allInOne"]["enabled"] is False
    filer_s3 = doc["filer"]["s3"]
    assert filer_s3["enabled"] is True and filer_s3["enableAuth"] is True
    assert filer_s3["existingConfigSecret"] == secrets.S3_SECRET
    assert "seaweedfs_s3_config" in generated()[secrets.S3_SECRET].data
    assert filer_s3["port"] == secrets.S3_PORT


def test_postgres_image_is_a_fixed_build_of_the_configured_major():
    doc = values("postgres")
    image = doc["cluster"]["imageName"]
    # MM.mm-TIMESTAMP-TYPE-OS: the immutable tags of cloudnative-pg/postgres-containers
    match = re.fullmatch(r"ghcr\.io/cloudnative-pg/postgresql:(\d+)\.\d+-\d{12}-(minimal|standard|system)-\w+", image)
    assert match, f"{image} is not a fixed PostgreSQL build"
    assert match.group(1) == str(doc["version"]["postgresql"])


def test_each_application_has_its_own_role_and_no_superuser_login():
    pg = values("postgres")
    cluster = pg["cluster"]
    assert cluster["enableSuperuserAccess"] is False
    initdb = cluster["initdb"]
    roles = {r["name"]: r for r in cluster["roles"]}
    databases = {d["name"]: d for d in pg["databases"]}
    assert not any(r.get("superuser") for r in roles.values())
    # database -> (owner role, the Secret with that role's password)
    owners = {initdb["database"]: (initdb["owner"], initdb["secret"]["name"])}
    owners.update({name: (d["owner"], roles[d["owner"]]["passwordSecret"]["name"]) for name, d in databases.items()})
    assert set(owners) == {"mlflow", "optuna"} and len({role for role, _ in owners.values()}) == 2
    made = generated()
    for database, (role, secret_name) in owners.items():
        secret = made[secret_name]  # `chiml up` generates it before the postgres release
        assert secret.type == "kubernetes.io/basic-auth" and secret.data["username"] == role, database
        assert len(secret.data["password"]) >= 24
    # each application logs in with the role that owns its database
    mlflow = values("mlflow")["backendStore"]
    assert mlflow["postgres"]["database"] == "mlflow"
    assert mlflow["existingDatabaseSecret"]["name"] == owners["mlflow"][1]
    optuna = values("optuna-dashboard")["storage"]
    assert optuna["database"] == "optuna" and optuna["existingSecret"] == owners["optuna"][1]
    defaults = yaml.safe_load((HELM_DIR / "charts" / "optuna-dashboard" / "values.yaml").read_text())
    assert defaults["storage"]["existingSecret"] == owners["optuna"][1]


def test_generated_secrets_exist_before_the_releases_that_read_them(kube_api):
    """The roles' Secrets are created by `up` before any release, into the platform namespace."""
    created = secrets.ensure_platform_secrets(kube_api, "chiml")
    assert {secrets.MLFLOW_PG_SECRET, secrets.OPTUNA_PG_SECRET} <= set(created)
    stored = kube_api.core.secrets[("chiml", secrets.OPTUNA_PG_SECRET)]
    assert stored.type == "kubernetes.io/basic-auth"
    shown = secrets.read_platform_secrets(kube_api, "chiml")
    assert shown["postgres_optuna_username"] == "optuna" and shown["postgres_mlflow_username"] == "mlflow"


def test_kserve_url_scheme_and_template_are_set_by_chiml():
    gateway = values("kserve-resources")["kserve"]["controller"]["gateway"]
    assert gateway["urlScheme"] == "${ingress_scheme}" and gateway["domain"] == "${ingress_domain}"
    assert gateway["domainTemplate"] == "{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}"


def test_every_release_has_a_values_file_and_no_values_file_is_orphaned():
    used = {r.values for r in load_releases(HELM_DIR)}
    present = {p.name for p in (HELM_DIR / "values").glob("*.yaml")}
    assert used == present
