# Kubernetes platform layer: chart linting/rendering, checkov, image requirement checks.
# Included by the Makefile; `make lint` picks up kube-lint as an extra prerequisite.

CHECKOV_VENV ?= .venv-checkov
HELM_CHARTS := $(wildcard helm/charts/*)
KUBE_RENDER_DIR ?= .rendered/helm

.PHONY: kube-lint kube-render kube-checkov kube-test kube-pins

lint: kube-lint

kube-lint: install tools kube-checkov ## helm lint + render of our charts, checkov on manifests and Dockerfiles
	@for chart in $(HELM_CHARTS); do helm lint --strict $$chart || exit 1; done

# Render every chart of ours with its defaults (the pytest suite also renders with helm/values/).
kube-render: tools
	@rm -rf $(KUBE_RENDER_DIR) && mkdir -p $(KUBE_RENDER_DIR)
	@for chart in $(HELM_CHARTS); do \
	  helm template $$(basename $$chart) $$chart --namespace chiml > $(KUBE_RENDER_DIR)/$$(basename $$chart).yaml || exit 1; \
	done

kube-checkov: kube-render
	@CHECKOV=$$(bash scripts/checkov_venv.sh) && \
	  $$CHECKOV -d $(KUBE_RENDER_DIR) --config-file helm/.checkov.yaml --skip-download && \
	  $$CHECKOV --framework dockerfile --skip-download --compact --quiet \
	    -d services/mlflow -d services/optuna-dashboard -d services/tensorboard

kube-test: install tools ## the Kubernetes layer's tests only (fake helm + real helm rendering)
	$(BIN)/python -m pytest tests/kube -q

# Needs the network (the chart registries): every upstream pin in helm/releases.yaml is pulled
# with `helm show chart` and must be published. Not part of the offline test suite, and not of
# .ci/run either: CI's machine reaches PyPI, Debian and npm only. Run it before bumping a pin.
kube-pins: install tools ## check that every chart pin in helm/releases.yaml is a published release
	$(BIN)/python scripts/check_chart_pins.py helm
