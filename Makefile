# Herald: `make run` starts the service, `make test` runs every test. Both set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: docs pg-deps test-long run test test-unit test-integration test-e2e test-browser lint bench clean venv browser-deps redis-deps chaos

venv: $(STAMP)

# Herald and its Python client (clients/python, which the `herald` commands use) together.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ./clients/python -e ".[test]"
	touch $(STAMP)

run: venv
	$(VENV)/bin/herald up

# Chromium for the browser tests comes from Debian (playwright cannot download browsers here).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
	  || echo "warning: could not install chromium; browser tests will be skipped (under CI=true: fail)"; }

# PostgreSQL for the tests of HERALD_DATABASE_URL comes from Debian too; the tests start their own
# servers (as the postgres user, on free loopback ports, in temp dirs), so the packaged cluster
# is stopped where installing it started one.
pg-deps:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null \
	  || { echo "error: could not install postgresql (the tests need it)"; exit 1; }; \
	  (systemctl disable --now postgresql || service postgresql stop) >/dev/null 2>&1 || true; }

# Redis for the Celery peer of `make bench` (and wrk, its HTTP load) come from Debian too. The bench starts its own
# redis-server on a free loopback port; the packaged service is stopped where it was started
# (it would hold 6379, which a local Ray's GCS may want).
redis-deps:
	@command -v wrk >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null \
	  || echo "warning: could not install wrk; single POSTs are driven by an aiohttp client"; }
	@command -v redis-server >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null \
	  || { echo "error: could not install redis-server (make bench needs it)"; exit 1; }; \
	  (systemctl disable --now redis-server || service redis-server stop) >/dev/null 2>&1 || true; }

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ./clients/python -e ".[test,bench]"
	touch $(BENCH_STAMP)

# docs/configuration.md is generated from the settings' docs (herald/settings.py); a unit test
# fails when it is stale.
docs: venv
	$(PY) -m herald.config_docs > docs/configuration.md

lint: venv
	$(VENV)/bin/ruff check herald actors serve capture launcher jobs analytics tests bench clients/python
	$(VENV)/bin/mypy

test-unit: venv
	$(PY) -m pytest tests/unit -q -p no:cacheprovider

test-integration: venv
	$(PY) -m pytest tests/integration -q -p no:cacheprovider

test-e2e: venv
	$(PY) -m pytest tests/e2e -q -p no:cacheprovider

test-browser: venv browser-deps
	$(PY) -m pytest tests/browser -q -p no:cacheprovider

test: venv browser-deps pg-deps lint
	$(PY) -m pytest tests -q -p no:cacheprovider

# Scenarios too long for `make test` (a database primary that stops answering…).
test-long: venv pg-deps
	$(PY) -m pytest tests -q -p no:cacheprovider -m long

bench: venv redis-deps pg-deps $(BENCH_STAMP)
	$(PY) -m bench.run

# Fault tests, long version (~10 min): kills, a whole restart, outages, overload, a full disk,
# fuzzing; prints the table docs/performance.md quotes. The short version runs inside `make test`.
chaos: venv
	$(PY) -m tests.chaos.run

clean:
	rm -rf $(VENV) .herald .pytest_cache .mypy_cache .ruff_cache
