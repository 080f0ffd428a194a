# Switchyard: `make run` brings the system up on embedded defaults (SQLite,
# in-process channel layer, Celery worker and beat on a filesystem broker; no
# servers needed); `make test` runs the suite
# against the PostgreSQL and Redis on 127.0.0.1.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/switchyard
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: venv run test lint bench bench-all clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

run: venv
	DEBUG=$${DEBUG-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG-1} $(BIN)/python manage.py bootstrap
	DEBUG=$${DEBUG-1} $(BIN)/python -m controlplane.runall --host $(HOST) --port $(PORT)

test: venv
	DATABASE_URL=$${DATABASE_URL-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL-$(TEST_REDIS_URL)} \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict breakers
	DEBUG=1 $(BIN)/mypy --config-file mypy-django.ini
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

bench: venv
	$(BIN)/python benchmarks/bench_breaker.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

bench-all: venv
	$(BIN)/python benchmarks/bench_breaker.py
	DATABASE_URL=$${DATABASE_URL-postgres://postgres@127.0.0.1:5432/postgres} $(BIN)/python benchmarks/bench_sync.py
	$(BIN)/python benchmarks/bench_propagation.py
