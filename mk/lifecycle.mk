# Model lifecycle: train, tune, registry, examples.
.PHONY: lifecycle-test lifecycle-walkthrough bench-tuning

lifecycle-test: install ## lifecycle tests (unit + real MLflow server + the walkthrough on a real local platform)
	$(BIN)/python -m pytest -q tests/lifecycle

lifecycle-walkthrough: install ## the examples' train → tune → register → deploy → predict on a real local platform
	$(BIN)/python -m pytest -q tests/lifecycle/test_walkthrough_e2e.py

bench-tuning: install ## trials/min of `chiml tune` with 1 and 2 workers (goal: >= 1.8x)
	$(BIN)/python benchmarks/bench_tuning.py

# Framework groups (services/trainer/frameworks/<group>.txt): measured to co-install with every pin
# of requirements/constraints.txt, so the local profile installs them all into the platform's .venv
# (chiml train, tune and the pyfunc endpoints all run with that interpreter).
FRAMEWORK_GROUPS := classic torch tensorflow jax notebooks
FRAMEWORKS_STAMP := $(VENV)/.frameworks

.PHONY: frameworks frameworks-test
$(FRAMEWORKS_STAMP): $(STAMP) $(CONSTRAINTS) $(foreach g,$(FRAMEWORK_GROUPS),services/trainer/frameworks/$(g).txt)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) $(foreach g,$(FRAMEWORK_GROUPS),-r services/trainer/frameworks/$(g).txt)
	$(BIN)/python -m pip check
	@touch $@

frameworks: $(FRAMEWORKS_STAMP) ## install every framework group (TF/Keras, JAX, XGBoost, LightGBM, CatBoost, Lightning, transformers, JupyterLab) into .venv

frameworks-test: frameworks ## every framework example end to end on a local platform, kernels, JupyterLab
	$(BIN)/python -m pytest -q tests/frameworks
