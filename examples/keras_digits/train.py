"""Handwritten digits (8x8, shipped with scikit-learn: no download) with a small Keras 3 classifier.

Runs unchanged under `chiml train`, `chiml tune` and plain `python train.py`:

    chiml train examples/keras_digits/train.py --param epochs=5
    chiml tune  examples/keras_digits/train.py --trials 10 --workers 2

The model takes raw pixel values (0-16, float32, shape [N, 64]) and returns 10 class
probabilities; it is logged in MLflow's keras flavor (served by the pyfunc runtime).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ banner is not the run's output

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from chiml import tracking as ct


class ChimlMetrics(keras.callbacks.Callback):
    """Every epoch's logs to MLflow/TensorBoard (and Optuna's pruner inside `chiml tune`)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        ct.log_metrics(step=epoch, **{k: float(v) for k, v in (logs or {}).items()})
        if ct.should_prune():
            self.model.stop_training = True
            raise ct.Pruned()


def build(hidden: int, dropout: float, lr: float) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input(shape=(64,), dtype="float32"),
            keras.layers.Rescaling(1.0 / 16.0),  # part of the model: clients send raw pixels
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> float:
    ct.objective("val_accuracy", "maximize")
    p = ct.params(
        epochs=5,
        batch_size=32,
        seed=0,
        hidden=ct.int_range(32, 256, log=True, default=64),
        lr=ct.float_range(3e-3, 2e-2, log=True, default=1e-2),
        dropout=ct.float_range(0.0, 0.3, default=0.1),
    )
    keras.utils.set_random_seed(p["seed"])
    features, labels = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        features.astype(np.float32), labels, test_size=0.25, random_state=p["seed"], stratify=labels
    )
    model = build(p["hidden"], p["dropout"], p["lr"])
    history = model.fit(
        x_train, y_train, validation_data=(x_val, y_val), epochs=p["epochs"], batch_size=p["batch_size"],
        callbacks=[ChimlMetrics()], verbose=0,
    )  # fmt: skip
    accuracy = float(history.history["val_accuracy"][-1])
    print(f"val_accuracy={accuracy:.4f}")
    ct.log_model(model, input_example=x_val[:5])
    return accuracy


if __name__ == "__main__":
    main()
