# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test check bench bench-profile system-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/tessera serve

# The servers the tests start for themselves (PostgreSQL 15, Redis) must exist on the machine.
system-deps:
	@sh ops/install-test-servers.sh

test: install system-deps
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Load scenarios against a real `tessera serve` (see README, "Performance"); not part of `test`.
bench: install system-deps
	@sh bench/install-wrk.sh
	$(BIN)/python -m pip install --quiet granian  # only to compare it with uvicorn
	$(BIN)/python -m bench

# Where the server's time goes under one scenario (me, refresh or login), sampled by py-spy.
SCENARIO ?= me
bench-profile: install system-deps
	@sh bench/install-wrk.sh
	$(BIN)/python -m pip install --quiet py-spy
	$(BIN)/python -m bench.profile $(SCENARIO)

check: install
	$(BIN)/ruff check domain application infrastructure interfaces tests bench
	$(BIN)/ruff format --check domain application infrastructure interfaces tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
