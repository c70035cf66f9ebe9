# Every verb a newcomer needs. Each target creates .venv and installs the pinned
# requirements when they are missing or have changed, so a bare machine with Python 3.11+
# only needs `make run` or `make test`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: run test serve migrate lint format bench bench-chat bench-assistant faults clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "streamsite needs Python 3.11 or newer (found: $$($(PYTHON) --version 2>&1))"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: requirements.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.installed-run

migrate: $(VENV)/.installed-run
	$(PY) manage.py migrate --noinput

## Development server (daphne via runserver): HTTP, SSE and WebSockets on one port, and
## one task worker (`db_worker`) for the jobs. Ctrl-C stops both.
run: migrate
	$(PY) manage.py seed_demo
	@trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	$(PY) manage.py db_worker --no-reload & worker=$$!; \
	$(PY) manage.py runserver $(HOST):$(PORT)

## Production server: uvicorn with $(WORKERS) processes (needs REDIS_URL for more than one).
## Task workers run beside it, as processes of their own: see README, "Workers".
serve: migrate
	$(PY) manage.py serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

## The whole suite, on whatever DATABASE_URL / REDIS_URL say (default: SQLite, in memory).
test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

## Benchmarks on the local PostgreSQL + Redis (docs/benchmarks.md): about 35 minutes.
## `make bench ARGS=--quick` for a smoke run; `ARGS=--soak` for the 10-minute soak;
## `ARGS=--help` lists the options.
bench: $(VENV)/.installed-dev
	$(PY) -m bench.sse $(ARGS)

## Chat socket benchmark (docs/benchmarks.md, "Chat sockets"): about 40 minutes.
## `make bench-chat ARGS=--quick` for a smoke run (~5 min); `ARGS=--soak` for the soak;
## `ARGS=--help` lists the options.
bench-chat: $(VENV)/.installed-dev
	$(PY) -m bench.chat $(ARGS)

## Assistant benchmark (docs/benchmarks.md, "Assistant"): time to first token and per-token
## overhead against the fake upstream, 200 answers at once, a stalled tab, Stop from the
## other process: about 12 minutes. `make bench-assistant ARGS=--quick` for a smoke run
## (~4 min); `ARGS=--help` lists the options.
bench-assistant: $(VENV)/.installed-dev
	$(PY) -m bench.assistant $(ARGS)

## Fault campaign (docs/reliability.md): forced reconnects, Redis and server restarts and a
## rolling restart under load on live servers, PostgreSQL + Redis (DATABASE_URL, REDIS_URL).
## `make faults ARGS=--small` is the size CI runs.
faults: $(VENV)/.installed-dev
	$(PY) -m faults $(ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
