"""The model lifecycle: tracked training runs, tuning studies, the model registry.

* :mod:`chiml.lifecycle.tracking` is the helper API user scripts import
  (``from chiml.lifecycle import tracking as ct``); it works under ``chiml train``, inside
  ``chiml tune`` trials and under plain ``python train.py``.
* :mod:`chiml.lifecycle.train`, :mod:`chiml.lifecycle.tune` and :mod:`chiml.lifecycle.registry`
  are what ``Platform.train`` / ``Platform.tune`` / ``Platform.models`` delegate to.
"""
