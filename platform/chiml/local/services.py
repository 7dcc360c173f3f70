"""The local platform's services: what runs, on which port, and how its health is checked.

Everything binds to 127.0.0.1. Secrets (the PostgreSQL password) travel in environment
variables or owner-only files, never on a command line where `ps` would show them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from chiml.config import LoadedConfig
from chiml.local import jupyterlab
from chiml.local.layout import HomeLayout
from chiml.local.postgres import ManagedPostgres, sqlalchemy_url
from chiml.local.supervisor import Program


@dataclass
class LocalService:
    """One service of the local platform."""

    name: str
    title: str
    port: int
    program: Program
    health_path: str | None  # None: a TCP/database check instead of HTTP

    @property
    def url(self) -> str:
        if self.health_path is None:
            return f"postgresql://127.0.0.1:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def check_health(self, timeout: float = 2.0) -> tuple[bool, str]:
        """(healthy, detail) — never raises."""
        if self.health_path is None:
            import socket

            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=timeout):
                    return True, "accepting connections"
            except OSError as err:
                return False, f"not accepting connections ({err.strerror or err})"
        try:
            response = httpx.get(self.url + self.health_path, timeout=timeout)
        except httpx.HTTPError as err:
            return False, f"no answer ({err.__class__.__name__})"
        if response.status_code == 200:
            return True, "ok"
        return False, f"HTTP {response.status_code}"


def _venv_bin(name: str) -> str:
    # The services come from the same environment chiml runs in.
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def _base_env() -> dict[str, str]:
    env = {"PYTHONUNBUFFERED": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    return env


def database_urls(loaded: LoadedConfig) -> tuple[str, str]:
    """(MLflow backend store URI, Optuna storage) for the configured database."""
    local = loaded.config.local
    layout = HomeLayout(loaded.home)
    if local.database == "sqlite":
        return f"sqlite:///{layout.mlflow_db}", str(layout.optuna_journal)
    if local.postgresql.url:
        base = local.postgresql.url.rstrip("/")
        root = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
        return sqlalchemy_url(f"{root}/mlflow"), sqlalchemy_url(f"{root}/optuna")
    pg = ManagedPostgres(loaded)
    return pg.url("mlflow"), pg.url("optuna")


def build_services(loaded: LoadedConfig) -> list[LocalService]:
    """The services chiml.yaml asks for, in start order."""
    local = loaded.config.local
    layout = HomeLayout(loaded.home)
    home = loaded.home
    mlflow_uri, _optuna_storage = database_urls(loaded)
    services: list[LocalService] = []

    if local.database == "postgresql" and not local.postgresql.url:
        pg = ManagedPostgres(loaded)
        services.append(LocalService("postgresql", "PostgreSQL", local.ports.postgresql, pg.program(), None))

    if "mlflow" in local.services:
        services.append(
            LocalService(
                "mlflow",
                "MLflow tracking + registry",
                local.ports.mlflow,
                Program(
                    name="mlflow",
                    command=[
                        _venv_bin("mlflow"),
                        "server",
                        "--host",
                        local.host,
                        "--port",
                        str(local.ports.mlflow),
                        # One worker, no job runner: the defaults start ~15 processes and 2.5 GB.
                        "--workers",
                        "1",
                        "--artifacts-destination",
                        str(layout.mlflow_artifacts),
                        "--serve-artifacts",
                    ],
                    directory=home,
                    environment={
                        **_base_env(),
                        "MLFLOW_BACKEND_STORE_URI": mlflow_uri,
                        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                    },
                    priority=200,
                    startsecs=3,
                ),
                "/health",
            )
        )

    if "optuna_dashboard" in local.services:
        toml = layout.secrets / "optuna-dashboard.toml"
        command = [
            _venv_bin("optuna-dashboard"),
            "--host",
            local.host,
            "--port",
            str(local.ports.optuna_dashboard),
            "--quiet",
            "--from-config",
            str(toml),
        ]
        if local.database == "sqlite":
            command += ["--storage-class", "JournalFileStorage"]
        services.append(
            LocalService(
                "optuna_dashboard",
                "Optuna dashboard",
                local.ports.optuna_dashboard,
                Program(
                    name="optuna_dashboard", command=command, directory=home, environment=_base_env(), priority=300
                ),
                "/api/meta",
            )
        )

    if "tensorboard" in local.services:
        services.append(
            LocalService(
                "tensorboard",
                "TensorBoard",
                local.ports.tensorboard,
                Program(
                    name="tensorboard",
                    command=[
                        _venv_bin("tensorboard"),
                        "--logdir",
                        str(layout.tensorboard_logdir),
                        "--host",
                        local.host,
                        "--port",
                        str(local.ports.tensorboard),
                        "--reload_interval",
                        "5",
                        "--reload_multifile",
                        "true",
                    ],
                    directory=home,
                    environment={**_base_env(), "TF_CPP_MIN_LOG_LEVEL": "3"},
                    priority=300,
                ),
                "/data/logdir",
            )
        )

    # JupyterLab comes with `make frameworks` (the notebooks group); without it, no service.
    if "jupyterlab" in local.services and jupyterlab.installed():
        services.append(
            LocalService(
                "jupyterlab",
                "JupyterLab",
                local.ports.jupyterlab,
                Program(
                    name="jupyterlab",
                    command=jupyterlab.command(),
                    directory=jupyterlab.notebooks_dir(home),
                    environment={**_base_env(), **jupyterlab.environment(home)},
                    priority=400,
                    startsecs=3,
                ),
                "/api",  # answers without the token (the server version only)
            )
        )
    return services


def write_optuna_dashboard_config(loaded: LoadedConfig) -> None:
    """The dashboard reads its storage URL from an owner-only TOML file (it may hold a password)."""
    import json

    layout = HomeLayout(loaded.home)
    _, storage = database_urls(loaded)
    path = layout.secrets / "optuna-dashboard.toml"
    text = f"[optuna_dashboard]\nstorage = {json.dumps(storage)}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
