# Two commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
STAMP := $(VENV)/.installed

.PHONY: run test test-pg install web scheduler bench bench-draw bench-reports bench-callers clean

$(STAMP): requirements.txt requirements-test.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $(STAMP)

install: $(STAMP)

## make run: install, migrate, seed demo data on first run, create demo users, then the
## scheduler process (draws the month on start if it is due) and the web server on :5000
run: $(STAMP)
	$(FLASK) db upgrade
	$(FLASK) demo seed
	$(FLASK) demo users
	@echo "打开 http://127.0.0.1:5000"
	$(FLASK) scheduler run & SCHEDULER_PID=$$!; \
	trap 'kill $$SCHEDULER_PID 2>/dev/null' EXIT INT TERM; \
	$(FLASK) run --host 127.0.0.1 --port 5000

## make test: the import layers (.importlinter), then the whole suite (SQLite; set
## TEST_DATABASE_URL for PostgreSQL)
test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## the same suite against the local PostgreSQL server
test-pg: $(STAMP)
	$(BIN)/lint-imports --no-cache
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} $(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/import_roster.py
	$(BIN)/python bench/draw.py
	$(BIN)/python bench/reports.py
	$(BIN)/python bench/callers.py

bench-draw: $(STAMP)
	$(BIN)/python bench/draw.py

## rankings and the monthly Excel report over a year of results, city and province (PostgreSQL, ~6-8 min)
bench-reports: $(STAMP)
	$(BIN)/python bench/reports.py $(BENCH_ARGS)

## 30 simulated callers against gunicorn on the local PostgreSQL server (~1-2 min)
bench-callers: $(STAMP)
	$(BIN)/python bench/callers.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache tests/output
