# Container images: no engine builds them here, so CI installs each image's pinned requirements
# into a throwaway venv (and checkov reads the Dockerfiles in kube-lint / tests).
.PHONY: images-check

images-check: ## install every services/*/requirements.txt into a throwaway venv
	$(PYTHON) scripts/check_image_requirements.py
