"""Handwritten digits (8x8, shipped with scikit-learn: no download) with a JAX MLP trained by optax.

Runs unchanged under `chiml train`, `chiml tune` and plain `python train.py`:

    chiml train examples/jax_digits/train.py --param epochs=10
    chiml tune  examples/jax_digits/train.py --trials 10 --workers 2

MLflow has no JAX flavor, so the model is logged as a pyfunc ``PythonModel`` that carries its
parameters as numpy arrays and runs the jitted forward function: the pyfunc runtime serves it
(raw pixels, float32 [N, 64], in; 10 logits out).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mlflow.pyfunc
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from chiml import tracking as ct


def forward(params: dict, x: jax.Array) -> jax.Array:
    hidden = jax.nn.relu((x / 16.0) @ params["w1"] + params["b1"])
    return hidden @ params["w2"] + params["b2"]


class JaxDigits(mlflow.pyfunc.PythonModel):
    """The trained parameters (numpy, so the pickle needs no device) and the forward pass."""

    requirements = ("jax", "jaxlib")

    def __init__(self, params: dict) -> None:
        self.params = {name: np.asarray(value) for name, value in params.items()}

    def predict(self, context: object, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        x = jnp.asarray(np.asarray(model_input, dtype=np.float32))
        return np.asarray(jax.jit(forward)(self.params, x))


def init(key: jax.Array, hidden: int) -> dict:
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (64, hidden)) * (2 / 64) ** 0.5,
        "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(k2, (hidden, 10)) * (1 / hidden) ** 0.5,
        "b2": jnp.zeros(10),
    }


def main() -> float:
    ct.objective("val_accuracy", "maximize")
    p = ct.params(
        epochs=10,
        batch_size=64,
        seed=0,
        hidden=ct.int_range(32, 256, log=True, default=64),
        lr=ct.float_range(3e-3, 3e-2, log=True, default=1e-2),
    )
    features, labels = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        features.astype(np.float32), labels, test_size=0.25, random_state=p["seed"], stratify=labels
    )
    params = init(jax.random.PRNGKey(p["seed"]), p["hidden"])
    optimizer = optax.adam(p["lr"])
    state = optimizer.init(params)

    def loss_fn(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()

    @jax.jit
    def step(params: dict, state: optax.OptState, x: jax.Array, y: jax.Array) -> tuple:
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    rng = np.random.default_rng(p["seed"])
    accuracy = 0.0
    for epoch in range(p["epochs"]):
        order = rng.permutation(len(x_train))
        total = 0.0
        for start in range(0, len(order), p["batch_size"]):
            batch = order[start : start + p["batch_size"]]
            params, state, loss = step(params, state, x_train[batch], y_train[batch])
            total += float(loss) * len(batch)
        logits = forward(params, x_val)
        val_loss = float(loss_fn(params, x_val, y_val))
        accuracy = float((logits.argmax(axis=1) == y_val).mean())
        ct.log_metrics(step=epoch, train_loss=total / len(x_train), val_loss=val_loss, val_accuracy=accuracy)
        print(f"epoch {epoch}: val_loss={val_loss:.4f} val_accuracy={accuracy:.4f}")
        if ct.should_prune():
            raise ct.Pruned()
    ct.log_model(JaxDigits(params), input_example=x_val[:5])
    return accuracy


if __name__ == "__main__":
    main()
