# The project's verbs. `make demo` and `make test` work on a fresh machine: they create .venv and
# install everything the project needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The Trino CLI tests run the real CLI jar, which needs a Java runtime.
system-deps:
	@command -v java >/dev/null 2>&1 || { \
		echo "installing a Java runtime for the Trino CLI tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless; }

demo: install
	$(BIN)/python -m gateway.demo

test: install system-deps
	$(BIN)/python -m pytest -q tests chaos

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
