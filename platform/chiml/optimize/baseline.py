"""The original model, run the way its framework runs it (torch eager, scikit-learn, Keras,
XGBoost, LightGBM, CatBoost).

It is the reference for the correctness gate and the denominator of every speedup, and it is
driven by the same benchmark worker as the runtimes (same process isolation, same threads).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


class OriginalModelEngine:
    """``(model_dir, threads, options)`` like a runtime engine; options carry the flavor and I/O names."""

    def __init__(self, model_dir: str | os.PathLike[str], threads: int | None = None,
                 options: dict[str, Any] | None = None) -> None:
        options = options or {}
        self.flavor: str = options["flavor"]
        self.input_names: list[str] = options["inputs"]
        self.input_dtypes: dict[str, str] = options.get("dtypes", {})
        self.output_names: list[str] = options["outputs"]
        self.output_shapes: dict[str, list[int]] = options.get("output_shapes", {})
        self.columns: list[str] | None = options.get("columns")
        self.task: str = options.get("task", "other")
        path = str(Path(model_dir))
        if self.flavor == "pytorch":
            import mlflow.pytorch
            import torch

            if threads:
                torch.set_num_threads(threads)
            self.torch = torch
            from chiml.optimize.export import eval_mode

            self.model = mlflow.pytorch.load_model(path, map_location="cpu")
            eval_mode(self.model)
        elif self.flavor == "sklearn":
            import mlflow.sklearn

            self.model = mlflow.sklearn.load_model(path)
        else:
            from chiml.optimize.export import load_original

            self.model = load_original(self.flavor, Path(path))  # ChimlError for an unknown flavor

    def infer(self, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
        feeds = {name: np.asarray(arrays[name], dtype=self.input_dtypes.get(name)) for name in self.input_names}
        return self.run(feeds)

    def _shaped(self, name: str, value: np.ndarray) -> np.ndarray:
        shape = self.output_shapes.get(name)
        if shape is not None and value.ndim == len(shape) - 1:
            value = value.reshape(value.shape[0], *[d if d > 0 else 1 for d in shape[1:]])
        return value

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.flavor == "pytorch":
            with self.torch.inference_mode():
                result = self.model(*(self.torch.from_numpy(feeds[name]) for name in self.input_names))
            results = result if isinstance(result, (tuple, list)) else (result,)
            return {name: out.numpy() for name, out in zip(self.output_names, results, strict=True)}
        if self.flavor == "tensorflow":  # Keras 3: model.predict, one array per output
            arrays = [feeds[name] for name in self.input_names]
            result = self.model.predict(arrays[0] if len(arrays) == 1 else arrays, verbose=0)
            results = result if isinstance(result, (tuple, list)) else (result,)
            return {name: np.asarray(out) for name, out in zip(self.output_names, results, strict=True)}
        matrix: Any = feeds[self.input_names[0]]
        if self.columns:
            import pandas as pd

            matrix = pd.DataFrame(matrix, columns=self.columns)
        if self.task == "classifier" and hasattr(self.model, "predict_proba"):
            # one pass: predict() is argmax(predict_proba) for these estimators
            proba = self.model.predict_proba(matrix)
            label = self.model.classes_[np.argmax(proba, axis=1)]
            values = {"label": label, "probabilities": proba}
            return {name: self._shaped(name, np.asarray(values[name])) for name in self.output_names if name in values}
        prediction = np.asarray(self.model.predict(matrix))
        return {self.output_names[0]: self._shaped(self.output_names[0], prediction)}
