# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The one tool installed outside the lock: it installs the lock. Only Python and make are needed.
UV_VERSION := 0.13.9
UV := UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv

.PHONY: install lock upgrade-lock run test test-fast lint format bench browser-deps clean

install: $(STAMP)

# Exactly the versions in uv.lock (--frozen: never re-resolved). --inexact keeps uv itself,
# which is not in the lock. --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as in many
# container images) no interpreter caches what it compiles, so every worker, gateway and `up`
# compiled Celery, kombu, redis-py and pydantic again at its start: about 0.4 s of CPU each, half
# of the test suite's CPU. Compiled once here (3 s), a start reads them.
$(STAMP): pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(UV) sync --frozen --inexact --compile-bytecode --extra dev --extra monitor
	touch $(STAMP)

# After an edit of pyproject.toml's dependencies: the lock takes the change, nothing else moves.
lock: $(BIN)/uv
	$(UV) lock

# The deliberate step that moves every pin to the newest allowed version; then `make lint test`.
upgrade-lock: $(BIN)/uv
	$(UV) lock --upgrade

$(BIN)/uv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)

run: install
	$(BIN)/factorial-ws up

# Four test processes, one test file each at a time: most integration tests wait on real
# processes rather than compute (with the packages compiled at install, process starts no longer
# fill both cores), so four took 2:02-2:06 where three took 2:28-2:37. The files take their turn
# in collection order, where conftest.py puts the `long` ones first (xdist would order them by
# test count), so all four end within a second or two. Tests that time the system (marked
# `alone`) then run one by one, so no other test skews their figures.
test: install browser-deps
	$(BIN)/python -m pytest -n 4 --dist loadfile --no-loadscope-reorder -m "not alone"
	$(BIN)/python -m pytest -m alone

# The unit tests alone: no process is started but a private Redis for the producer's tests and a
# few fresh interpreters. Two processes: much of their time is waiting on timers and children.
test-fast: install
	$(BIN)/python -m pytest -n 2 tests/unit

lint: install
	$(BIN)/ruff check src tests examples *.py
	$(BIN)/ruff format --check src tests examples *.py
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests examples *.py
	$(BIN)/ruff format src tests examples *.py

bench: install
	$(BIN)/factorial-ws bench

# Debian's Chromium for the browser test (nothing downloads a browser of its own).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is not installed and this is not root: the browser test will be skipped"; \
	  fi; }

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench-results
