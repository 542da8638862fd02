# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test check system-deps clean fuzz stateful

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

# Schemathesis against the served OpenAPI schema; FUZZ_CASES examples per operation and mode.
FUZZ_CASES ?= 1000
fuzz: install
	FUZZ_CASES=$(FUZZ_CASES) $(BIN)/python -m pytest -q -s --timeout=0 tests/http/test_fuzz.py

# The Account/Session life cycle as a hypothesis state machine, random runs of STATEFUL_STEPS.
STATEFUL_EXAMPLES ?= 1000
STATEFUL_STEPS ?= 50
stateful: install
	STATEFUL_EXAMPLES=$(STATEFUL_EXAMPLES) STATEFUL_STEPS=$(STATEFUL_STEPS) \
		$(BIN)/python -m pytest -q -s --timeout=0 tests/application/test_lifecycle_properties.py

check: install
	$(BIN)/ruff check domain application infrastructure interfaces tests
	$(BIN)/ruff format --check domain application infrastructure interfaces tests
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
