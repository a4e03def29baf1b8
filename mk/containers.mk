# Container images (issue 3). Included from the Makefile; uses its VENV/BIN/STAMPS.
#
#   make images             the four images, alt-las/ai-orchestrator:{dev,test,staging,prod}
#   make base-image         the local debootstrap base (reused when it exists)
#   make docker-static-test hadolint, checkov and the Dockerfile/compose text tests
#   make container-test     the above, then the engine tests (builds and runs the images)
#   make bench-images       builds the images, then prints size, seconds to healthy and
#                           code-only rebuild seconds per image
#
# This project's machines reach no container registry, so the images build on the local
# base by default. Where the official image can be pulled: make images PYTHON_IMAGE=
LOCAL_BASE_IMAGE := alt-las/python-base:3.11-bookworm-local
PYTHON_IMAGE ?= $(LOCAL_BASE_IMAGE)
IMAGE_ENVS := dev test staging prod
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE_SOURCE := $(shell git remote get-url origin 2>/dev/null || echo unknown)
CHECKOV_VENV := .venv-checkov

.PHONY: images base-image docker-lint-venv docker-static-test container-test bench-images

base-image:
	scripts/build-base-image.sh $(LOCAL_BASE_IMAGE)

# The classic builder (DOCKER_BUILDKIT=0): Docker 20.10 here has no buildx.
images: $(if $(filter $(LOCAL_BASE_IMAGE),$(PYTHON_IMAGE)),base-image)
	for env in $(IMAGE_ENVS); do \
		DOCKER_BUILDKIT=0 docker build -f Dockerfile.$$env -t alt-las/ai-orchestrator:$$env \
			$(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) \
			--build-arg VERSION=$(IMAGE_VERSION) --build-arg REVISION=$(IMAGE_REVISION) \
			--build-arg SOURCE=$(IMAGE_SOURCE) . || exit 1; \
	done

# Checkov pins many packages of its own: its own lock, its own venv.
docker-lint-venv: $(STAMPS)/checkov

$(STAMPS)/checkov: requirements/docker-lint.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements/docker-lint.txt
	mkdir -p $(STAMPS) && touch $@

docker-static-test: venv docker-lint-venv
	$(BIN)/pytest -p no:cacheprovider tests/static_docker

# Builds the base image once (then reuses it) and the four images through the engine's
# cache; PYTHON_IMAGE=... in the environment tests on another base.
container-test: venv docker-lint-venv
	$(BIN)/pytest -p no:cacheprovider tests/static_docker tests/container

bench-images: venv images
	$(BIN)/python bench/images.py
