# Switchyard: `make run` brings the system up on embedded defaults (SQLite,
# in-process channel layer, Celery worker and beat on a filesystem broker; no
# servers needed); `make test` runs the suite
# against the PostgreSQL and Redis on 127.0.0.1.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# `make run DEMO=0` starts without the demo fleet; QUIET=0 shows access and task logs.
DEMO ?= 1
QUIET ?= 1
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/switchyard
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: venv node run test soak lint screenshot bench bench-all clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "==> creating the virtualenv $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV)
	@echo "==> installing the requirements into $(VENV) (a few minutes the first time)"
	@$(BIN)/pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt \
		| grep -E '^(Collecting|Successfully)' || true
	@test -x $(BIN)/uvicorn || { echo "pip install failed; see the output above"; exit 1; }
	@touch $@

# The test-only JavaScript dependencies (axe-core for the dashboard's accessibility scan),
# pinned by package-lock.json and installed into node_modules/ with `npm ci`.
node: node_modules/.installed

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the test dependencies (Debian: apt-get install npm)"; exit 1; }
	@echo "==> installing the test-only npm packages (package-lock.json) into node_modules/"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# RUN_DEPS= skips the virtualenv step (the end-to-end test reuses an existing one).
RUN_DEPS ?= venv
run: $(RUN_DEPS)
	@if [ -n "$$DATABASE_URL" ]; then echo "==> migrating the database at DATABASE_URL"; \
		else echo "==> migrating the SQLite database under var/"; fi
	@DEBUG=$${DEBUG-1} $(BIN)/python manage.py migrate --noinput -v 0
	@echo "==> creating the first users"
	@DEBUG=$${DEBUG-1} $(BIN)/python manage.py bootstrap
	@echo "==> starting web, Celery worker, beat$(if $(filter 1,$(DEMO)), and the demo fleet) (Ctrl-C stops all)"
	@DEBUG=$${DEBUG-1} SWITCHYARD_PUBLIC_URL=$${SWITCHYARD_PUBLIC_URL-http://127.0.0.1:$(PORT)} \
		$(BIN)/python -m controlplane.runall --host $(HOST) --port $(PORT) \
		$(if $(filter 1,$(DEMO)),--demo) $(if $(filter 1,$(QUIET)),--quiet)

test: venv node
	DATABASE_URL=$${DATABASE_URL-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL-$(TEST_REDIS_URL)} \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

# The soak (not part of `make test`): real agents with tripping breakers for MINUTES
# minutes, a fault every SOAK_EVERY seconds; see docs/reliability.md.
MINUTES ?= 10
SOAK_EVERY ?= 60
SOAK_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/switchyard_soak
SOAK_REDIS_URL ?= redis://127.0.0.1:6379/14
soak: venv
	DATABASE_URL=$${DATABASE_URL-$(SOAK_DATABASE_URL)} REDIS_URL=$${REDIS_URL-$(SOAK_REDIS_URL)} \
		$(BIN)/python -m tests.reliability.soak --minutes $(MINUTES) --every $(SOAK_EVERY)

# Refresh the README's picture (docs/dashboard.png) from a real demo run in a browser.
screenshot: venv
	SWITCHYARD_README_SCREENSHOT=1 DATABASE_URL=$${DATABASE_URL-$(TEST_DATABASE_URL)} \
		REDIS_URL=$${REDIS_URL-$(TEST_REDIS_URL)} \
		$(BIN)/python -m pytest -q tests/demo/test_demo_fresh_clone.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict breakers
	$(BIN)/lint-imports
	DEBUG=1 $(BIN)/mypy --config-file mypy-django.ini
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

bench: venv
	$(BIN)/python benchmarks/bench_breaker.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache

bench-all: venv
	$(BIN)/python benchmarks/bench_breaker.py
	DATABASE_URL=$${DATABASE_URL-postgres://postgres@127.0.0.1:5432/postgres} $(BIN)/python benchmarks/bench_sync.py
	$(BIN)/python benchmarks/bench_propagation.py
