# The two commands: `make demo` and `make test` work on a fresh clone (they create .venv if missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_DEMO := $(VENV)/.installed-payload
STAMP_TEST := $(VENV)/.installed-test
# The demo's state goes where the user keeps Orchestrate's: $ORCHESTRATE_HOME when set, else ~/.orchestrate.
DEMO_HOME ?= $(or $(ORCHESTRATE_HOME),$(HOME)/.orchestrate)
PYTEST_ARGS ?=

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_DEMO): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[payload]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP_DEMO)

demo: $(STAMP_DEMO)
	ORCHESTRATE_HOME='$(DEMO_HOME)' $(BIN)/orchestrate run --provider local --suite smoke
	ORCHESTRATE_HOME='$(DEMO_HOME)' $(BIN)/orchestrate report --last 1

test: $(STAMP_TEST)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP_TEST)
	$(BIN)/ruff check orchestrator benchmarks tests
	$(BIN)/mypy orchestrator benchmarks/keras_bench

bench: $(STAMP_TEST)
	$(BIN)/python benchmarks/bench_orchestrator.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_payload.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_remote.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_report.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_deploy.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_aws.py --output docs/performance.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
