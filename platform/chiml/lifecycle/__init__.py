"""The model lifecycle: tracked training runs, tuning studies, the model registry.

* The helpers training scripts call (``from chiml import tracking as ct``) are built here:
  :mod:`~chiml.lifecycle.context` (which run, which mode), :mod:`~chiml.lifecycle.space`
  (search spaces), :mod:`~chiml.lifecycle.params`, :mod:`~chiml.lifecycle.metrics`,
  :mod:`~chiml.lifecycle.model_logging` (with :mod:`~chiml.lifecycle.flavors`) and
  :mod:`~chiml.lifecycle.trial` (the tuning worker's hooks).
* :mod:`chiml.lifecycle.train`, :mod:`chiml.lifecycle.tune` and :mod:`chiml.lifecycle.registry`
  are what ``Platform.train`` / ``Platform.tune`` / ``Platform.models`` delegate to;
  :mod:`chiml.lifecycle.mlflow_client` is how they talk to the platform's MLflow.
"""
