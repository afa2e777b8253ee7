# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint format bench browser-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,monitor]'
	touch $(STAMP)

run: install
	$(BIN)/factorial-ws up

# Three test processes, one test file each at a time: most integration tests wait on real
# processes rather than compute, so the suite takes about half the time on two cores. Tests that
# time the system (marked `alone`) then run one by one, so no other test skews their figures.
test: install browser-deps
	$(BIN)/python -m pytest -n 3 --dist loadfile -m "not alone"
	$(BIN)/python -m pytest -m alone

# The unit tests alone: no process is started but a private Redis for the producer's tests.
test-fast: install
	$(BIN)/python -m pytest tests/unit

lint: install
	$(BIN)/ruff check src tests *.py
	$(BIN)/ruff format --check src tests *.py
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests *.py
	$(BIN)/ruff format src tests *.py

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
