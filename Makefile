# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
PLATFORM ?= kubernetes

.PHONY: demo test lint format install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m lifecycled.devstack.demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check lifecycled tests
	$(VENV)/bin/ruff format --check lifecycled tests
	$(VENV)/bin/mypy --strict lifecycled

format: $(STAMP)
	$(VENV)/bin/ruff format lifecycled tests
	$(VENV)/bin/ruff check --fix lifecycled tests

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
