# Chameleon infrastructure: Terraform checks and the orchestration tests.
.PHONY: checkov tf-check chameleon-test

checkov: ## checkov on terraform/ from its own venv (.venv-checkov, pinned by scripts/checkov_venv.sh)
	BC_SKIP_MAPPING=TRUE $$(scripts/checkov_venv.sh) -d terraform --framework terraform --skip-download --quiet --compact

tf-check: ## terraform fmt -check and the HCL structure tests of terraform/
	terraform fmt -check -recursive terraform
	$(BIN)/python -m pytest -q tests/chameleon/test_terraform.py

chameleon-test: install test-deps ## every Chameleon test (fakes for Blazar, terraform and SSH; cloud-init and checkov for real)
	$(BIN)/python -m pytest -q tests/chameleon

.PHONY: test-deps
test-deps: ## apt-install what the Chameleon tests run for real when it is missing (cloud-init for `cloud-init schema`)
	@command -v cloud-init >/dev/null 2>&1 || { \
	  echo "installing cloud-init (for cloud-init schema in tests/chameleon/test_cloud_init.py)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cloud-init; }
