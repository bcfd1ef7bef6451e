# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3.11

.PHONY: run test bench chaos setup lint typecheck contracts contracts-check vendor vendor-check browser golang services clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

# `npm install --no-save` installs the locked versions without rewriting the lock. (`npm ci` would be stricter,
# but this npm writes locks without the other platforms' optional anvil binaries and then refuses them.)
node_modules/.installed: package.json package-lock.json
	npm install --no-save --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(VENV)/.installed node_modules/.installed

# Checks Postgres and Redis answer, and says what to do in one line when they do not.
services: setup
	@$(PY) -m controlplane.preflight

run: setup services
	DEBUG=$${DEBUG:-1} $(PY) manage.py runstack

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy .

contracts: node_modules/.installed
	node devnet/contracts/compile.mjs

contracts-check: node_modules/.installed
	node devnet/contracts/compile.mjs --check

# The dashboard's htmx and uPlot, copied from node_modules into dashboard/static/vendor/ (committed: a deploy
# needs no npm). `make vendor` refreshes the copies after a pin changes; the check fails when they are stale.
vendor: setup
	$(PY) -m controlplane.vendor_static

vendor-check: setup
	$(PY) -m controlplane.vendor_static --check

# The browser tests drive Debian's chromium (Playwright's own browser download does not work here).
browser:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && apt-get install -y -qq chromium; }

# The tests' stand-ins for unmodified Aligned operators and aggregators are Go programs (standard library only).
golang:
	@command -v go >/dev/null || { echo "installing Debian's golang-go for the wire-protocol tests"; \
		apt-get update -qq && apt-get install -y -qq golang-go; }

test: setup services browser golang lint typecheck contracts-check vendor-check
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup services
	$(PY) -m tests.benchmarks.run $(BENCH_ARGS)

# The chaos suite over 50 seeds (over an hour): every component faulted, invariants read from the chain. It
# starts its own Postgres cluster and Redis server; `make test` runs 3 of its seeds.
chaos: setup services
	SECRET_KEY=$${SECRET_KEY:-chaos-suite-only} $(PY) manage.py devnet chaos --seeds $(or $(CHAOS_SEEDS),1-50) $(CHAOS_ARGS)

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache
