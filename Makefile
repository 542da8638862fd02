# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test docs docs-reference check bench bench-profile system-deps clean fuzz stateful chaos soak image

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

# Logs go to stdout, as short readable lines unless LOG_FORMAT says otherwise, and as ECS JSON
# lines to var/log/tessera.log too, unless LOG_FILE says otherwise.
run: install
	LOG_FORMAT=$${LOG_FORMAT:-console} LOG_FILE=$${LOG_FILE:-var/log/tessera.log} $(BIN)/tessera serve

# The servers the tests start for themselves (PostgreSQL 15, Redis) must exist on the machine.
system-deps:
	@sh ops/install-test-servers.sh

# The image (ops/Dockerfile) with buildah, on a base of Debian's packages made once (see
# docs/image.md): layers are cached, so a build with nothing changed takes seconds.
IMAGE ?= localhost/tessera:latest
image: system-deps
	@IMAGE=$(IMAGE) PYTHON=$(PYTHON) sh ops/build-image.sh

# In two halves. First the tests that mostly wait on real servers, on two xdist workers (a file
# stays on one worker, so its module fixtures start once); then those marked `serial` (timing,
# load, crashes recovered within a deadline), alone, so no other test skews what they measure.
# Both halves run even if the first fails; a half that PYTEST_ARGS leaves empty (exit 5) passes.
test: install system-deps docs
	@status=0; \
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not serial" $(PYTEST_ARGS) \
		|| { code=$$?; [ $$code -eq 5 ] || status=$$code; }; \
	$(BIN)/python -m pytest -q -m serial $(PYTEST_ARGS) \
		|| { code=$$?; [ $$code -eq 5 ] || status=$$code; }; \
	echo "screenshots of every page (tests/browser): $(CURDIR)/var/screenshots/"; \
	exit $$status

# The documentation site (mkdocs.yml, docs/) into site/. --strict: a broken link, a missing
# anchor or a page left out of the nav fails the build. `make test` builds it first.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The pages under docs/reference/, from the code: the Settings class and .env.example, the
# OpenAPI document the app serves, the domain's event classes, the problem table.
# tests/test_docs.py fails while a committed page differs from what this writes.
docs-reference: install
	$(BIN)/python -m tools.docs_reference

# Load scenarios against a real `tessera serve` (docs/performance.md); not part of `test`.
bench: install system-deps
	@sh bench/install-wrk.sh
	$(BIN)/python -m pip install --quiet granian  # only to compare it with uvicorn
	$(BIN)/python -m bench

# Where the server's time goes under one scenario (me, refresh, login, client_credentials or
# introspection), sampled by py-spy.
SCENARIO ?= me
bench-profile: install system-deps
	@sh bench/install-wrk.sh
	$(BIN)/python -m pip install --quiet py-spy
	$(BIN)/python -m bench.profile $(SCENARIO)

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

# kill -9 at random moments of serve, projectors and worker under load (CHAOS_SEED replays),
# and WORKER_KILLS rounds of the mail worker killed mid-SMTP; then nothing lost, nothing doubled.
CHAOS_ROUNDS ?= 20
WORKER_KILLS ?= 5
chaos: install system-deps
	CHAOS_ROUNDS=$(CHAOS_ROUNDS) WORKER_KILLS=$(WORKER_KILLS) $(BIN)/python -m pytest -q -s \
		--timeout=0 tests/e2e/test_chaos.py tests/e2e/test_outages.py \
		"tests/e2e/test_mail_delivery.py::test_killing_the_worker_mid_run_loses_no_mail_and_duplicates_none"

# SOAK_SECONDS of mixed load; RSS, fds and PostgreSQL connections must not grow without bound.
SOAK_SECONDS ?= 300
soak: install system-deps
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python -m pytest -q -s --timeout=0 tests/e2e/test_soak.py

check: install
	$(BIN)/ruff check domain application infrastructure interfaces tests bench tools
	$(BIN)/ruff format --check domain application infrastructure interfaces tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var site .pytest_cache .mypy_cache .ruff_cache
