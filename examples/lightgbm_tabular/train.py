"""Tabular classification (breast cancer data, shipped with scikit-learn) with LightGBM.

Runs unchanged under `chiml train`, `chiml tune` and plain `python train.py`:

    chiml train examples/lightgbm_tabular/train.py --param rounds=50
    chiml tune  examples/lightgbm_tabular/train.py --trials 10 --workers 2

Every boosting round's validation metrics go to MLflow and TensorBoard (and to Optuna's
pruner under `chiml tune`). The model takes the 30 raw features (float64, [N, 30]) and predicts
the class (0/1); it is logged in MLflow's lightgbm flavor (served by the pyfunc runtime).
"""

from __future__ import annotations

import lightgbm as lgb
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from chiml import tracking as ct


def chiml_metrics(env: lgb.callback.CallbackEnv) -> None:
    """Each round's evaluation results to chiml's helpers; stops when the pruner says so."""
    latest = {f"val_{metric}": value for _data, metric, value, _higher in env.evaluation_result_list}
    ct.log_metrics(step=env.iteration, val_accuracy=1.0 - latest["val_binary_error"], **latest)
    if ct.should_prune():
        raise ct.Pruned()


def main() -> float:
    ct.objective("val_accuracy", "maximize")
    p = ct.params(
        rounds=50,
        seed=0,
        num_leaves=ct.int_range(4, 64, log=True, default=15),
        learning_rate=ct.float_range(0.03, 0.5, log=True, default=0.1),
        min_child_samples=ct.int_range(5, 40, default=10),
    )
    features, labels = load_breast_cancer(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        features, labels, test_size=0.25, random_state=p["seed"], stratify=labels
    )
    model = lgb.LGBMClassifier(
        n_estimators=p["rounds"], num_leaves=p["num_leaves"], learning_rate=p["learning_rate"],
        min_child_samples=p["min_child_samples"], random_state=p["seed"], n_jobs=ct.threads(), verbose=-1,
    )  # fmt: skip
    model.fit(x_train, y_train, eval_set=[(x_val, y_val)], eval_metric=["binary_logloss", "binary_error"],
              callbacks=[chiml_metrics])  # fmt: skip
    accuracy = float((model.predict(x_val) == y_val).mean())
    print(f"val_accuracy={accuracy:.4f}")
    ct.log_model(model, input_example=x_val[:5])
    return accuracy


if __name__ == "__main__":
    main()
