# Optimized inference: runtime tests, the runtime benchmark, the DeepSparse env.
.PHONY: optimize-test optimize-bench deepsparse-env

optimize-test: install ## the optimize tests (export, runtimes, gate, pipeline, CLI, DeepSparse env)
	$(BIN)/python -m pytest -q tests/optimize

optimize-bench: install ## runtime speedups over torch eager / scikit-learn (benchmarks/results/runtimes.json)
	$(BIN)/python benchmarks/bench_runtimes.py

deepsparse-env: install ## create CHIML_HOME/envs/deepsparse (DeepSparse 1.8.0: end-of-life, evaluation licence)
	$(BIN)/python -c "from chiml.config import load_config; from chiml.optimize.deepsparse_env import ensure; \
	print(ensure(load_config().home, print))"
