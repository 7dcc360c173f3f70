# Model lifecycle (issue 3): train, tune, registry, examples.
.PHONY: lifecycle-test lifecycle-walkthrough bench-tuning

lifecycle-test: install ## lifecycle tests (unit + real MLflow server + the walkthrough on a real local platform)
	$(BIN)/python -m pytest -q tests/lifecycle

lifecycle-walkthrough: install ## the examples' train → tune → register → deploy → predict on a real local platform
	$(BIN)/python -m pytest -q tests/lifecycle/test_walkthrough_e2e.py

bench-tuning: install ## trials/min of `chiml tune` with 1 and 2 workers (goal: >= 1.8x)
	$(BIN)/python benchmarks/bench_tuning.py
