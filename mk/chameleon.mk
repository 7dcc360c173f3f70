# Chameleon infrastructure (issue 5): Terraform checks and the orchestration tests.
.PHONY: checkov tf-check chameleon-test

checkov: ## checkov on terraform/ from its own venv (.venv-checkov, pinned by scripts/checkov_venv.sh)
	BC_SKIP_MAPPING=TRUE $$(scripts/checkov_venv.sh) -d terraform --framework terraform --skip-download --quiet --compact

tf-check: ## terraform fmt -check and the HCL structure tests of terraform/
	terraform fmt -check -recursive terraform
	$(BIN)/python -m pytest -q tests/chameleon/test_terraform.py

chameleon-test: install ## every Chameleon test (fakes for Blazar, terraform and SSH; cloud-init and checkov for real)
	$(BIN)/python -m pytest -q tests/chameleon
