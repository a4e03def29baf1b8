# The two commands a new user needs: `make run` and `make test`. Each does all set-up
# itself: the virtual environment from the hash-locked requirements, then the default models.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
LOCKS := requirements/runtime.txt requirements/build.txt requirements/dev.txt
MODEL_FILES := models/smollm2-135m-instruct.Q4_1.gguf models/digits-classifier.onnx
DEFAULT_MODELS := smollm2-135m-instruct,digits-classifier
# `make run PORT=8080` where 8000 is taken.
PORT ?= 8000

.PHONY: run test venv models lint typecheck images lock clean bench

run: venv models
	AIO_PRELOAD=$(DEFAULT_MODELS) exec $(BIN)/ai-orchestrator serve --host 127.0.0.1 --port $(PORT)

# Every test: in-process, real uvicorn, LLM, the Dockerfile checks (checkov has its own
# venv, from mk/containers.mk) and the container images built and run on the engine.
test: venv models lint typecheck docker-lint-venv
	$(BIN)/pytest

venv: $(STAMPS)/venv

$(STAMPS)/venv: $(LOCKS) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes $(addprefix -r ,$(LOCKS))
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	mkdir -p $(STAMPS) && touch $@

models: $(STAMPS)/models

$(STAMPS)/models: $(STAMPS)/venv models/catalogue.yaml scripts/prepare_models.py \
		scripts/train_digits.py requirements/models.txt
	$(BIN)/python scripts/prepare_models.py
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

bench: venv models
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/orchestration.py

# Container images and their tests (issue 3) live in their own file.
-include mk/containers.mk

# Regenerates the hash locks from the .in files (needs network access to PyPI).
lock:
	$(BIN)/python -m pip install --quiet uv
	cd requirements && for f in runtime build dev; do \
		$(BIN)/uv pip compile --python-version 3.11 --generate-hashes --quiet $$f.in -o $$f.txt; \
	done

clean:
	rm -rf $(VENV) $(STAMPS) models/*.gguf models/*.onnx models/*.json
