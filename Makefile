# Quick start: `make run` (web + worker) and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install migrate run test lint format bench chaos clean

# The pinned requirements, then the project itself (editable, without dependencies): that puts
# the command-line client in .venv/bin/long-task.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

# Development mode for the local server and its database (settings refuse to start without
# DJANGO_SECRET_KEY otherwise); an explicit DJANGO_DEBUG=0 wins.
run migrate: export DJANGO_DEBUG ?= 1

migrate: install
	$(BIN)/python manage.py migrate --noinput

# However it is stopped, no process of it outlives it (docs/deployment.md, "Processes"). A plain
# command line, so that make runs it without a shell: make is its parent, whose death it watches.
run: migrate
	$(BIN)/python manage.py run --port $(PORT) --stop-with-parent

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The performance targets, each next to a baseline measured in the same run (bench/targets.py, on
# the harness bench/harness.py). BENCH_ARGS=--cpu-hog: with one core kept busy meanwhile.
bench: install
	$(BIN)/python bench/bench.py $(if $(FULL),--full) $(BENCH_ARGS)

# Random pauses, resumes, terminates and worker kills; prints a table (tests/chaos.py).
chaos: install
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
