# Every target sets itself up, quietly: the venv is created and the project installed on first
# use, and again whenever a pyproject.toml changes. `make run` installs what the server needs to
# run; every other target adds the development tools.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: install run test lint fmt bench clean

install: $(DEV)

$(RUNTIME): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) -e ./clients/python -e .
	touch $@

$(DEV): $(RUNTIME)
	$(PIP) -e ./clients/python -e '.[dev]'
	touch $@

run: $(RUNTIME)
	$(BIN)/deltagate serve

# The suite's real processes (Redis, pods, nginx, browsers) mostly wait, so test files are
# spread over a few workers; each worker starts its own redis-server.
PYTEST_WORKERS ?= 3

test: $(DEV)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy broker gateway clients/python/deltagate_client

fmt: $(DEV)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(DEV)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
