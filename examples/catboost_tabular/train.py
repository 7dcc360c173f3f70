"""Tabular classification (breast cancer data, shipped with scikit-learn) with CatBoost.

Runs unchanged under `chiml train`, `chiml tune` and plain `python train.py`:

    chiml train examples/catboost_tabular/train.py --param rounds=50
    chiml tune  examples/catboost_tabular/train.py --trials 10 --workers 2

Every boosting round's validation metrics go to MLflow and TensorBoard (and to Optuna's
pruner under `chiml tune`). The model takes the 30 raw features (float64, [N, 30]) and predicts
the class (0/1); it is logged in MLflow's catboost flavor (served by the pyfunc runtime).
"""

from __future__ import annotations

import tempfile

from catboost import CatBoostClassifier
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from chiml import tracking as ct


class ChimlMetrics:
    """CatBoost's callback protocol: ``after_iteration`` returns False to stop training."""

    def after_iteration(self, info: object) -> bool:
        validation = info.metrics["validation"]  # type: ignore[attr-defined]
        latest = {f"val_{name.lower()}": values[-1] for name, values in validation.items()}
        ct.log_metrics(step=info.iteration, **latest)  # type: ignore[attr-defined]
        return not ct.should_prune()


def main() -> float:
    ct.objective("val_accuracy", "maximize")
    p = ct.params(
        rounds=50,
        seed=0,
        depth=ct.int_range(2, 8, default=4),
        learning_rate=ct.float_range(0.03, 0.5, log=True, default=0.1),
        l2_leaf_reg=ct.float_range(1.0, 10.0, log=True, default=3.0),
    )
    features, labels = load_breast_cancer(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        features, labels, test_size=0.25, random_state=p["seed"], stratify=labels
    )
    with tempfile.TemporaryDirectory() as scratch:  # CatBoost writes its own logs; keep them out of the cwd
        model = CatBoostClassifier(
            iterations=p["rounds"], depth=p["depth"], learning_rate=p["learning_rate"], l2_leaf_reg=p["l2_leaf_reg"],
            random_seed=p["seed"], thread_count=ct.threads(), eval_metric="Accuracy", train_dir=scratch,
            verbose=False, allow_writing_files=False,
        )  # fmt: skip
        model.fit(x_train, y_train, eval_set=(x_val, y_val), callbacks=[ChimlMetrics()])
    if ct.should_prune():
        raise ct.Pruned()
    accuracy = float((model.predict(x_val) == y_val).mean())
    print(f"val_accuracy={accuracy:.4f}")
    ct.log_model(model, input_example=x_val[:5])
    return accuracy


if __name__ == "__main__":
    main()
