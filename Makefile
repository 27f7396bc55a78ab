# Charter — the two commands: `make run` (start the platform) and `make test` (every test).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: run demo test install node promtool alerting wrk browser lint pact-verify fuzz gov bench bench-quick chaos report clean backup

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Node.js tools (Spectral + the OWASP ruleset, Backstage's catalog-model), pinned in
# package-lock.json; --ignore-scripts keeps install-time telemetry scripts from running.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(NODE_STAMP)

node: $(NODE_STAMP)

# promtool (Debian's prometheus package) checks and unit-tests the generated alert rules.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "promtool missing: install Debian's prometheus package"; fi; }

# Prometheus and Alertmanager (Debian's prometheus, prometheus-alertmanager) for the real
# alerting test (tests/deploy/test_alerting_real.py); promtool comes with the first.
alerting:
	@{ command -v prometheus && command -v promtool && command -v prometheus-alertmanager; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null; \
	  else echo "prometheus/alertmanager missing: install Debian's prometheus and prometheus-alertmanager packages"; fi; }

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
test: $(STAMP) $(NODE_STAMP) promtool alerting wrk browser lint
	$(BIN)/python -m pytest

# wrk (Debian) is the load generator of `make bench`.
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; \
	  else echo "wrk missing: install Debian's wrk package"; fi; }

## bench: the governed read, the direct hop, the FastAPI and Flask peers, checkout and
## token issuance, side by side in one run (bench/README.md); results in bench/results/
bench: $(STAMP) wrk
	$(BIN)/python -m bench

## bench-quick: a few seconds per figure, a smoke test of the harness (no timing asserted)
bench-quick: $(STAMP) wrk
	$(BIN)/python -m bench --quick

## chaos: 200 concurrent checkouts while services are killed at random, then the
## invariants table (docs/operations.md, Chaos run); CHAOS_ARGS="--amqp" for RabbitMQ
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.chaos --n 200 $(CHAOS_ARGS)

## backup: a consistent copy of every service's database in var/backups/<UTC timestamp>/
## (charter backup; BACKUP_DIR=… elsewhere); restore: charter restore <that folder>
## (docs/operations.md, Backup and restore)
backup: $(STAMP)
	$(BIN)/charter backup $(if $(BACKUP_DIR),--to $(BACKUP_DIR))

## report: the fault-tolerance report (failover, chaos, bench, replication lag, restore
## drill) in reports/<date>/index.html and index.md (docs/operations.md); REPORT_QUICK=1
## for short runs (a smoke test), REPORT_ARGS="--skip bench" to leave a part out
report: $(STAMP) wrk
	$(BIN)/python -m bench.fault_report $(if $(REPORT_QUICK),--quick) $(REPORT_ARGS)

## pact-verify: verify every provider against the committed pacts (contracts/pacts/)
pact-verify: $(STAMP)
	$(BIN)/python -m pytest tests/contracts -q -p no:cacheprovider

## fuzz: the long Schemathesis run on every spec (the short one is part of `make test`)
fuzz: $(STAMP) $(NODE_STAMP)
	CHARTER_FUZZ=long $(BIN)/python -m pytest tests/fuzz -q -p no:cacheprovider

## gov: API style rules, breaking-change check against the published baselines, catalog drift
gov: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest tests/governance -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy charter charterctl auth services governance bench
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .mypy_cache .ruff_cache
