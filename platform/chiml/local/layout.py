"""Where the local profile keeps things under CHIML_HOME (one place, so nothing guesses)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HomeLayout:
    home: Path

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def secrets(self) -> Path:
        return self.home / "secrets"

    @property
    def mlflow_db(self) -> Path:
        return self.data / "mlflow" / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.data / "mlflow" / "artifacts"

    @property
    def optuna_journal(self) -> Path:
        return self.data / "optuna" / "journal.log"

    @property
    def tensorboard_logdir(self) -> Path:
        return self.data / "tensorboard"

    @property
    def postgres_link(self) -> Path:
        return self.data / "postgresql"

    def create(self) -> None:
        for folder in (
            self.data,
            self.logs,
            self.mlflow_artifacts,
            self.optuna_journal.parent,
            self.tensorboard_logdir,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        self.secrets.mkdir(parents=True, exist_ok=True)
        self.secrets.chmod(0o700)
