"""Tabular classification (breast cancer data, shipped with scikit-learn) with XGBoost.

Runs unchanged under `chiml train`, `chiml tune` and plain `python train.py`:

    chiml train examples/xgboost_tabular/train.py --param rounds=50
    chiml tune  examples/xgboost_tabular/train.py --trials 10 --workers 2

Every boosting round's validation metrics go to MLflow and TensorBoard (and to Optuna's
pruner under `chiml tune`). The model takes the 30 raw features (float64, [N, 30]) and predicts
the class (0/1); it is logged in MLflow's xgboost flavor (served by the pyfunc runtime).
"""

from __future__ import annotations

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from chiml import tracking as ct


class ChimlMetrics(xgb.callback.TrainingCallback):
    """Each round's evaluation results to chiml's helpers; stops when the pruner says so."""

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
        latest = {f"val_{name}": values[-1] for name, values in evals_log.get("validation_0", {}).items()}
        ct.log_metrics(step=epoch, val_accuracy=1.0 - latest["val_error"], **latest)
        return ct.should_prune()


def main() -> float:
    ct.objective("val_accuracy", "maximize")
    p = ct.params(
        rounds=50,
        seed=0,
        max_depth=ct.int_range(2, 8, default=4),
        learning_rate=ct.float_range(0.03, 0.5, log=True, default=0.1),
        subsample=ct.float_range(0.6, 1.0, default=0.9),
    )
    features, labels = load_breast_cancer(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        features, labels, test_size=0.25, random_state=p["seed"], stratify=labels
    )
    model = xgb.XGBClassifier(
        n_estimators=p["rounds"], max_depth=p["max_depth"], learning_rate=p["learning_rate"],
        subsample=p["subsample"], random_state=p["seed"], n_jobs=ct.threads(),
        eval_metric=["logloss", "error"], callbacks=[ChimlMetrics()],
    )  # fmt: skip
    model.fit(x_train, y_train, eval_set=[(x_val, y_val)], verbose=False)
    if ct.should_prune():
        raise ct.Pruned()
    accuracy = float((model.predict(x_val) == y_val).mean())
    print(f"val_accuracy={accuracy:.4f}")
    ct.log_model(model, input_example=x_val[:5].astype(np.float64))
    return accuracy


if __name__ == "__main__":
    main()
