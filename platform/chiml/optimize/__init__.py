"""Optimized inference: compile a registered model for each runtime, gate it, measure it, pick one.

Layers, bottom up: :mod:`source` (the registered model and its inputs), :mod:`export` (ONNX),
:mod:`candidates` (which runtimes, and their artifacts), :mod:`gate` (same answers?),
:mod:`bench` (one process per runtime), :mod:`report`, :mod:`tracking` (MLflow), and
:mod:`pipeline` which strings them together. :mod:`artifacts` is what `chiml deploy` uses.
"""
