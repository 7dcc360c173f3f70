"""The `local:` section: every service a supervised process on 127.0.0.1."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from chiml.config.base import Section

Port = int


# The UI services the local profile can run (PostgreSQL runs when the database is postgresql).
UIService = Literal["mlflow", "optuna_dashboard", "tensorboard", "jupyterlab"]

class LocalPorts(Section):
    """TCP ports of the local services (all bound to the loopback address)."""

    mlflow: Port = Field(5000, ge=1024, le=65535, description="MLflow tracking server and registry")
    optuna_dashboard: Port = Field(8080, ge=1024, le=65535, description="optuna-dashboard")
    tensorboard: Port = Field(6006, ge=1024, le=65535, description="TensorBoard")
    postgresql: Port = Field(5433, ge=1024, le=65535, description="managed PostgreSQL (database: postgresql)")
    jupyterlab: Port = Field(8888, ge=1024, le=65535, description="JupyterLab (token in CHIML_HOME/secrets)")

    @model_validator(mode="after")
    def _distinct(self) -> LocalPorts:
        seen: dict[int, str] = {}
        for name, port in self.model_dump().items():
            if port in seen:
                raise ValueError(f"ports.{name} and ports.{seen[port]} are both {port}")
            seen[port] = name
        return self


class PostgresSettings(Section):
    """PostgreSQL for MLflow and Optuna when `database: postgresql`."""

    url: str | None = Field(
        None,
        description="connect to this server (postgresql://user:pass@host:port) instead of "
        "running one under CHIML_HOME; databases 'mlflow' and 'optuna' must exist",
    )
    bin_dir: str | None = Field(None, description="folder holding initdb/pg_ctl/postgres (searched if unset)")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgresql+psycopg2://")):
            raise ValueError("must start with postgresql://")
        return value


class LocalConfig(Section):
    """Settings of the local profile."""

    host: Literal["127.0.0.1"] = Field(
        "127.0.0.1", description="bind address; loopback only: the local profile has no auth"
    )
    ports: LocalPorts = LocalPorts()
    endpoint_ports: str = Field("9100-9199", description="port range for model endpoints, 'LOW-HIGH'")
    database: Literal["sqlite", "postgresql"] = Field(
        "sqlite", description="backend of MLflow and Optuna: sqlite (+ Optuna journal file) or postgresql"
    )
    postgresql: PostgresSettings = PostgresSettings()
    health_timeout_s: float = Field(120.0, gt=0, description="how long `up` waits for all services")
    services: list[UIService] = Field(
        default_factory=lambda: list(get_args(UIService)),
        description="which UI services to run (MLflow is needed by train/tune/deploy; jupyterlab runs only "
        "where `make frameworks` installed it)",
    )

    @field_validator("endpoint_ports")
    @classmethod
    def _range(cls, value: str) -> str:
        try:
            low, high = (int(part) for part in value.split("-"))
        except ValueError:
            raise ValueError("must look like 9100-9199") from None
        if not 1024 <= low <= high <= 65535:
            raise ValueError("must be LOW-HIGH within 1024-65535")
        return value

    def endpoint_port_range(self) -> range:
        low, high = (int(part) for part in self.endpoint_ports.split("-"))
        return range(low, high + 1)
