# Charter — the two commands: `make run` (start the platform) and `make test` (every test).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run demo test install browser lint clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Browser tests drive Debian's chromium (Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: browser tests will be skipped (install Debian's chromium)"; fi; }

## run: create the virtualenv, install, migrate, seed demo data and start everything in
## development mode (Ctrl-C stops); production never defaults to it
run: $(STAMP)
	$(BIN)/charter up --dev

## demo: walk the user journey against a running `make run` (in another shell)
demo: $(STAMP)
	$(BIN)/charter --dev demo

## test: install and run every test (unit, API, integration with PostgreSQL/Redis, end-to-end)
test: $(STAMP) browser lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy charter charterctl auth services
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
