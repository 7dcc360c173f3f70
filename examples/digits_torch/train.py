"""Handwritten digits (8x8, shipped with scikit-learn: no download) with a small torch MLP or CNN.

Runs unchanged under `chiml train`, `chiml tune` and plain `python train.py`:

    chiml train examples/digits_torch/train.py --param epochs=5
    chiml tune  examples/digits_torch/train.py --trials 20 --workers 2

The model takes raw pixel values (0-16, float32, shape [N, 64]) and returns 10 logits, so an
endpoint can be called with the rows of `sample.json` as they are.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from chiml import tracking as ct


class DigitsNet(nn.Module):
    """MLP or CNN over 8x8 digits; scaling is part of the model so clients send raw pixels."""

    def __init__(self, arch: str = "mlp", hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.arch = arch
        if arch == "cnn":
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU()
            )
            width = 32 * 4 * 4
        else:
            self.features = nn.Identity()
            width = 64
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / 16.0
        if self.arch == "cnn":
            x = x.reshape(-1, 1, 8, 8)
        return self.head(self.features(x))


def load_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    features, labels = load_digits(return_X_y=True)
    return train_test_split(
        features.astype(np.float32), labels.astype(np.int64), test_size=0.25, random_state=seed, stratify=labels
    )


def main() -> float:
    ct.objective("val_accuracy", "maximize")  # what `chiml tune` optimizes unless --metric/--direction say otherwise
    p = ct.params(
        epochs=5,
        batch_size=32,
        seed=0,
        # Ranges where even a few epochs train well (the CI walkthrough tunes with 3 epochs).
        arch=ct.choice(["mlp", "cnn"], default="mlp"),
        hidden=ct.int_range(32, 256, log=True, default=64),
        lr=ct.float_range(3e-3, 2e-2, log=True, default=1e-2),
        dropout=ct.float_range(0.0, 0.3, default=0.1),
    )
    torch.manual_seed(p["seed"])
    device = ct.device()
    x_train, x_val, y_train, y_val = load_data(p["seed"])
    model = DigitsNet(p["arch"], p["hidden"], p["dropout"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=p["lr"])
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_train).to(device), torch.from_numpy(y_train).to(device)
    xv, yv = torch.from_numpy(x_val).to(device), torch.from_numpy(y_val).to(device)
    generator = torch.Generator().manual_seed(p["seed"])
    accuracy = 0.0
    for epoch in range(p["epochs"]):
        model.train()
        order = torch.randperm(len(xt), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(order), p["batch_size"]):
            batch = order[start : start + p["batch_size"]]
            optimizer.zero_grad()
            loss = loss_fn(model(xt[batch]), yt[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        model.eval()
        with torch.no_grad():
            logits = model(xv)
            val_loss = loss_fn(logits, yv).item()
            accuracy = (logits.argmax(dim=1) == yv).float().mean().item()
        ct.log_metrics(step=epoch, train_loss=total / len(xt), val_loss=val_loss, val_accuracy=accuracy)
        print(f"epoch {epoch}: train_loss={total / len(xt):.4f} val_loss={val_loss:.4f} val_accuracy={accuracy:.4f}")
        if ct.should_prune():
            raise ct.Pruned()
    ct.log_model(model.cpu(), input_example=x_val[:5])
    return accuracy


if __name__ == "__main__":
    main()
