# `make run` serves the app; `make test` runs the linter and the whole test suite.
# Both create the virtual environment in .venv and install requirements.txt on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench evaluate examples clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) app.py

lint: install
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q

bench: install
	$(PY) -m segdemo.bench

evaluate: install
	$(PY) -m segdemo.evaluate

examples: install
	$(PY) -m segdemo.examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
