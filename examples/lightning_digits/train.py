"""Handwritten digits (8x8, shipped with scikit-learn: no download) with a PyTorch Lightning module.

Runs unchanged under `chiml train`, `chiml tune` and plain `python train.py`:

    chiml train examples/lightning_digits/train.py --param epochs=5
    chiml tune  examples/lightning_digits/train.py --trials 10 --workers 2

A LightningModule is a torch module: it is logged in MLflow's pytorch flavor (served by the
pyfunc runtime; raw pixels, float32 [N, 64], in; 10 logits out). Lightning's own loggers are
off: a callback sends each epoch's metrics through chiml's helpers instead, so they reach MLflow,
TensorBoard and Optuna's pruner exactly like the other examples.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from chiml import tracking as ct


class DigitsModule(L.LightningModule):
    def __init__(self, hidden: int = 64, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
        self.loss = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / 16.0)  # scaling inside the model: clients send raw pixels

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _index: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _index: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", self.loss(logits, y), on_epoch=True)
        self.log("val_accuracy", (logits.argmax(dim=1) == y).float().mean(), on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class ChimlMetrics(L.Callback):
    """The epoch's logged metrics to chiml's helpers; a pruned trial stops the trainer."""

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        ct.log_metrics(step=trainer.current_epoch, **{k: float(v) for k, v in trainer.callback_metrics.items()})
        if ct.should_prune():
            raise ct.Pruned()


def main() -> float:
    ct.objective("val_accuracy", "maximize")
    p = ct.params(
        epochs=5,
        batch_size=32,
        seed=0,
        hidden=ct.int_range(32, 256, log=True, default=64),
        lr=ct.float_range(3e-3, 2e-2, log=True, default=1e-2),
    )
    L.seed_everything(p["seed"], verbose=False)
    features, labels = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        features.astype(np.float32), labels.astype(np.int64), test_size=0.25, random_state=p["seed"], stratify=labels
    )
    train = DataLoader(TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
                       batch_size=p["batch_size"], shuffle=True)  # fmt: skip
    val = DataLoader(TensorDataset(torch.from_numpy(x_val), torch.from_numpy(y_val)), batch_size=256)
    module = DigitsModule(p["hidden"], p["lr"])
    trainer = L.Trainer(
        max_epochs=p["epochs"], accelerator="gpu" if ct.device() == "cuda" else "cpu", devices=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ChimlMetrics()],
    )  # fmt: skip
    trainer.fit(module, train, val)
    accuracy = float(trainer.callback_metrics["val_accuracy"])
    print(f"val_accuracy={accuracy:.4f}")
    ct.log_model(module.cpu(), input_example=x_val[:5])
    return accuracy


if __name__ == "__main__":
    main()
