"""Credentials generated at install time into Kubernetes Secrets (never into git or values files).

`chiml up` creates each Secret once (an existing one is never overwritten, so a re-run keeps
the credentials that data already depends on); `chiml status --show-secrets` reads them back.
The PostgreSQL roles' passwords are generated here too (one role per application, see
helm/values/postgres.yaml): CloudNativePG reads them from these Secrets when it creates the
roles, so they must exist before the `postgres` release is installed.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass

import bcrypt

from chiml.kube.kubeapi import KubeApi

S3_SECRET = "chiml-s3"
UI_AUTH_SECRET = "chiml-ui-auth"
INFERENCE_AUTH_SECRET = "chiml-inference-auth"
# JupyterLab's own token (helm/charts/jupyterlab reads it by secretKeyRef), behind the UI auth
JUPYTERLAB_SECRET = "chiml-jupyterlab"
JUPYTERLAB_TOKEN_KEY = "token"
# one PostgreSQL role (and database) per application; CloudNativePG reads basic-auth Secrets
MLFLOW_PG_SECRET = "chiml-pg-mlflow"
OPTUNA_PG_SECRET = "chiml-pg-optuna"
MLFLOW_PG_ROLE = "mlflow"
OPTUNA_PG_ROLE = "optuna"
BASIC_AUTH = "kubernetes.io/basic-auth"

UI_USER = "chiml"
INFERENCE_USER = "chiml"
S3_PORT = 8333
S3_REGION = "us-east-1"

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int = 32) -> str:
    """URL- and shell-safe random credential."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def htpasswd_line(user: str, password: str) -> str:
    """One htpasswd entry with a bcrypt hash, as Traefik's basicAuth reads it.

    Python's bcrypt writes the ``$2b$`` prefix; Apache's htpasswd (and the examples in Traefik's
    docs) use ``$2y$``, the same algorithm; we write ``$2y$`` to match what tooling expects.
    """
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    return f"{user}:$2y${hashed[4:]}"


def s3_endpoint_host(namespace: str) -> str:
    return f"seaweedfs-s3.{namespace}:{S3_PORT}"


@dataclass(frozen=True)
class GeneratedSecret:
    name: str
    data: dict[str, str]
    annotations: dict[str, str]
    type: str = "Opaque"


def generate(namespace: str) -> list[GeneratedSecret]:
    """Fresh credentials for every platform Secret (only used for Secrets that don't exist yet)."""
    access_key, secret_key = random_token(20), random_token(40)
    s3_config = {
        "identities": [
            {
                "name": "chiml",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    ui_password, token = random_token(24), random_token(40)
    return [
        GeneratedSecret(
            S3_SECRET,
            {
                "AWS_ACCESS_KEY_ID": access_key,
                "AWS_SECRET_ACCESS_KEY": secret_key,
                # SeaweedFS's S3 gateway reads its identities from this key (filer.s3.existingConfigSecret)
                "seaweedfs_s3_config": json.dumps(s3_config),
            },
            # KServe's storage initializer takes the endpoint from these annotations
            {
                "serving.kserve.io/s3-endpoint": s3_endpoint_host(namespace),
                "serving.kserve.io/s3-usehttps": "0",
                "serving.kserve.io/s3-verifyssl": "0",
                "serving.kserve.io/s3-region": S3_REGION,
            },
        ),
        GeneratedSecret(
            UI_AUTH_SECRET,
            {"users": htpasswd_line(UI_USER, ui_password), "username": UI_USER, "password": ui_password},
            {},
        ),
        GeneratedSecret(
            INFERENCE_AUTH_SECRET,
            {"users": htpasswd_line(INFERENCE_USER, token), "username": INFERENCE_USER, "token": token},
            {},
        ),
        # CloudNativePG takes a role's password from a basic-auth Secret whose username is the role
        GeneratedSecret(MLFLOW_PG_SECRET, {"username": MLFLOW_PG_ROLE, "password": random_token(32)}, {}, BASIC_AUTH),
        GeneratedSecret(OPTUNA_PG_SECRET, {"username": OPTUNA_PG_ROLE, "password": random_token(32)}, {}, BASIC_AUTH),
        GeneratedSecret(JUPYTERLAB_SECRET, {JUPYTERLAB_TOKEN_KEY: random_token(48)}, {}),
    ]


def ensure_platform_secrets(api: KubeApi, namespace: str) -> list[str]:
    """Create the platform Secrets that are missing; returns the names created."""
    api.ensure_namespace(namespace)
    created = []
    for secret in generate(namespace):
        if api.read_secret(namespace, secret.name) is not None:
            continue
        if api.create_secret(namespace, secret.name, secret.data, secret.annotations, secret_type=secret.type):
            created.append(secret.name)
    return created


def delete_platform_secrets(api: KubeApi, namespace: str) -> None:
    for name in (S3_SECRET, UI_AUTH_SECRET, INFERENCE_AUTH_SECRET, MLFLOW_PG_SECRET, OPTUNA_PG_SECRET,
                 JUPYTERLAB_SECRET):
        api.delete_secret(namespace, name)


def read_platform_secrets(api: KubeApi, namespace: str) -> dict[str, str]:
    """What `chiml status --show-secrets` prints (missing Secrets are skipped)."""
    out: dict[str, str] = {}
    ui = api.read_secret(namespace, UI_AUTH_SECRET)
    if ui:
        out["ui_username"], out["ui_password"] = ui.get("username", ""), ui.get("password", "")
    inference = api.read_secret(namespace, INFERENCE_AUTH_SECRET)
    if inference:
        out["inference_username"], out["inference_token"] = inference.get("username", ""), inference.get("token", "")
    s3 = api.read_secret(namespace, S3_SECRET)
    if s3:
        out["s3_access_key_id"] = s3.get("AWS_ACCESS_KEY_ID", "")
        out["s3_secret_access_key"] = s3.get("AWS_SECRET_ACCESS_KEY", "")
    jupyterlab = api.read_secret(namespace, JUPYTERLAB_SECRET)
    if jupyterlab:
        out["jupyterlab_token"] = jupyterlab.get(JUPYTERLAB_TOKEN_KEY, "")
    for app, secret_name in (("mlflow", MLFLOW_PG_SECRET), ("optuna", OPTUNA_PG_SECRET)):
        pg = api.read_secret(namespace, secret_name)
        if pg:
            out[f"postgres_{app}_username"] = pg.get("username", "")
            out[f"postgres_{app}_password"] = pg.get("password", "")
    return out
