# Quick start: `make run` (web + worker) and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: install migrate run test lint format bench chaos clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: migrate
	$(BIN)/python manage.py run --port $(PORT)

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

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
