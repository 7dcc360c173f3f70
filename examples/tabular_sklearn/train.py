"""Tabular classification (breast cancer data, shipped with scikit-learn) with a scikit-learn pipeline.

An SGD logistic-regression trained epoch by epoch with ``partial_fit``, so every epoch's
validation metrics reach MLflow, TensorBoard and (under `chiml tune`) Optuna's pruner.
Runs unchanged under `chiml train`, `chiml tune` and plain `python train.py`:

    chiml train examples/tabular_sklearn/train.py --param epochs=20
    chiml tune  examples/tabular_sklearn/train.py --trials 20 --workers 2

The model takes the 30 raw features (float64, shape [N, 30]) and predicts the class (0/1).
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from chiml import tracking as ct


def main() -> float:
    ct.objective("val_accuracy", "maximize")  # what `chiml tune` optimizes unless --metric/--direction say otherwise
    p = ct.params(
        epochs=20,
        seed=0,
        alpha=ct.float_range(1e-6, 1e-1, log=True, default=1e-4),
        eta0=ct.float_range(1e-3, 1.0, log=True, default=0.05),
        penalty=ct.choice(["l2", "l1", "elasticnet"], default="l2"),
    )
    features, labels = load_breast_cancer(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        features, labels, test_size=0.25, random_state=p["seed"], stratify=labels
    )
    scaler = StandardScaler().fit(x_train)
    classifier = SGDClassifier(
        loss="log_loss",
        alpha=p["alpha"],
        penalty=p["penalty"],
        learning_rate="constant",
        eta0=p["eta0"],
        random_state=p["seed"],
    )
    classes = np.unique(labels)
    rng = np.random.default_rng(p["seed"])
    scaled_train, scaled_val = scaler.transform(x_train), scaler.transform(x_val)
    accuracy = 0.0
    for epoch in range(p["epochs"]):
        order = rng.permutation(len(scaled_train))
        classifier.partial_fit(scaled_train[order], y_train[order], classes=classes)
        accuracy = accuracy_score(y_val, classifier.predict(scaled_val))
        loss = log_loss(y_val, classifier.predict_proba(scaled_val), labels=classes)
        ct.log_metrics(step=epoch, val_loss=loss, val_accuracy=accuracy)
        if ct.should_prune():
            raise ct.Pruned()
    print(f"val_accuracy={accuracy:.4f}")
    model = Pipeline([("scale", scaler), ("classify", classifier)])
    ct.log_model(model, input_example=x_val[:5])
    return accuracy


if __name__ == "__main__":
    main()
