# The two commands a new user needs:
#   make demo   - set everything up, start a local Kafka, run the quick-start demo, stop
#   make test   - set everything up, run lint, types and the whole test suite on real Kafka
# Set-up (a venv in .venv, the package and its test tools, the Kafka jars from Maven
# Central into ~/.cache/edgebus) happens on first use and is skipped after.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint typecheck unit bench clean

# The find: replacing an earlier (hatchling) editable install leaves an empty
# site-packages/edgebus/ behind, which would shadow setuptools' editable finder.
$(STAMP): pyproject.toml setup.py $(wildcard edgebus/_native/*.c edgebus/_native/*.h)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	find $(VENV)/lib -depth -path '*/site-packages/edgebus*' -type d -empty -delete
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/edgebus kafka fetch

demo: setup
	$(BIN)/edgebus demo

lint: $(STAMP)
	$(BIN)/ruff check edgebus connectors tests setup.py
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers (each with its own broker), a test file per worker at a time: module
# fixtures are set up once, and the suite takes about 16 minutes instead of 25.
TEST_WORKERS ?= 2

test: setup lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

unit: $(STAMP)
	$(BIN)/pytest tests/unit tests/property

bench: setup
	$(BIN)/edgebus bench produce

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
