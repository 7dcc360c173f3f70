"""Tiny reference models on scikit-learn's digits, logged to a real MLflow server and registered."""

from __future__ import annotations

from typing import Any

import numpy as np

DIGITS_FEATURES = 64
# After logging, mlflow's process-global tracking URI points at a closed port, so code under test
# that forgets to pass the platform's URI explicitly fails instead of passing by accident.
NOWHERE = "http://127.0.0.1:9"


def digits(held_out: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    return x[:-held_out], y[:-held_out], x[-held_out:], y[-held_out:]


def torch_mlp(hidden: int = 128, epochs: int = 30, seed: int = 0) -> Any:
    import torch

    torch.manual_seed(seed)
    x, y, _, _ = digits()
    model = torch.nn.Sequential(torch.nn.Linear(DIGITS_FEATURES, hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        optimizer.step()
    return model.eval()


class DigitsCNN:  # built lazily so importing this module does not import torch
    @staticmethod
    def build(seed: int = 0) -> Any:
        import torch

        torch.manual_seed(seed)
        return torch.nn.Sequential(
            torch.nn.Unflatten(1, (1, 8, 8)),
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10),
        ).eval()


def sklearn_logreg() -> Any:
    from sklearn.linear_model import LogisticRegression

    x, y, _, _ = digits()
    return LogisticRegression(max_iter=300).fit(x, y)


def log_torch(tracking_uri: str, name: str, model: Any, alias: str | None = "production",
              signature: bool = True, example_rows: int = 64) -> str:
    """Log and register; returns the version."""
    import mlflow
    from mlflow.models import infer_signature

    _, _, held, _ = digits()
    example = held[:example_rows]
    mlflow.set_tracking_uri(tracking_uri)
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(example)).numpy()
    try:
        with mlflow.start_run():
            info = mlflow.pytorch.log_model(
                model, name="model", registered_model_name=name,
                signature=infer_signature(example, out) if signature else None,
                input_example=example if signature else None,
            )
    finally:
        mlflow.set_tracking_uri(NOWHERE)
    return _alias(tracking_uri, name, info.registered_model_version, alias)


def log_sklearn(tracking_uri: str, name: str, model: Any, alias: str | None = "production",
                signature: bool = True) -> str:
    import mlflow
    from mlflow.models import infer_signature

    _, _, held, _ = digits()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                model, name="model", registered_model_name=name,
                signature=infer_signature(held, model.predict(held)) if signature else None,
                input_example=held if signature else None, serialization_format="cloudpickle")
    finally:
        mlflow.set_tracking_uri(NOWHERE)
    return _alias(tracking_uri, name, info.registered_model_version, alias)


def _alias(tracking_uri: str, name: str, version: Any, alias: str | None) -> str:
    from mlflow import MlflowClient

    if alias:
        MlflowClient(tracking_uri).set_registered_model_alias(name, alias, str(version))
    return str(version)
