# Charter — the two commands: `make run` (start the platform) and `make test` (every test).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install lint typecheck clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: create the virtualenv, install, migrate, seed demo data and start everything (Ctrl-C stops)
run: $(STAMP)
	$(BIN)/charter up

## test: install and run every test (unit, API, integration with PostgreSQL/Redis, end-to-end)
test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy charter auth services

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
