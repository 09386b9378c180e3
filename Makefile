# The two commands: `make demo` and `make test` work on a fresh clone (they create .venv if missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_DEMO := $(VENV)/.installed-payload
STAMP_TEST := $(VENV)/.installed-test
# The demo's state goes where the user keeps Orchestrate's: $ORCHESTRATE_HOME when set, else ~/.orchestrate.
DEMO_HOME ?= $(or $(ORCHESTRATE_HOME),$(HOME)/.orchestrate)
PYTEST_ARGS ?=
# The suite runs on this many pytest-xdist workers: most tests wait on processes, sockets and sshd more than they
# compute, so more workers than the 2 cores finish sooner (docs/performance.md, "The test suite").
TEST_WORKERS ?= 4
# loadgroup: a test module marked xdist_group (those whose module-scoped fixtures run a payload) goes to one worker,
# so its shared runs are made once; the other tests are spread one by one.
# The infrastructure checks' tools, outside the project's venv: checkov pins old boto3 and packaging (FACTS), and
# cloud-init's JSON schema comes from Debian's cloud-init package (not on PyPI).
CHECKOV := .venv-checkov/bin/checkov
CLOUD_INIT_SCHEMA := .cache/cloud-init/schema-cloud-config-v1.json

.PHONY: demo test check lint bench clean image

# Installs go through uv (same versions as pip, resolved and unpacked in parallel: ~15 s instead of ~2.5 min for the
# test extras with a warm cache, docs/performance.md); pip stays in the venv for what users and tests run with it.
UV := $(BIN)/uv
# --compile-bytecode: uv, unlike pip, leaves .py files uncompiled, and where PYTHONDONTWRITEBYTECODE is set (as on
# these VMs and in CI) nothing ever writes the .pyc files, so every process compiled what it imported, each time:
# TensorFlow + Keras took ~15 CPU-s to import instead of ~7, on every payload start. Compiling once at install takes
# ~40 s on 2 cores (docs/performance.md, "Bytecode").
UV_INSTALL := $(UV) pip install --quiet --compile-bytecode

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(UV): | $(BIN)/python
	$(BIN)/python -m pip install --quiet 'uv>=0.5'

$(STAMP_DEMO): pyproject.toml setup.py | $(UV)
	$(UV_INSTALL) --python $(BIN)/python -e '.[payload]'
	touch $@

$(STAMP_TEST): pyproject.toml setup.py | $(UV)
	$(UV_INSTALL) --python $(BIN)/python -e '.[test]'
	touch $@ $(STAMP_DEMO)

demo: $(STAMP_DEMO)
	ORCHESTRATE_HOME='$(DEMO_HOME)' $(BIN)/orchestrate run --provider local --suite smoke
	ORCHESTRATE_HOME='$(DEMO_HOME)' $(BIN)/orchestrate report --last 1

$(CHECKOV): | $(UV)
	$(PYTHON) -m venv --without-pip .venv-checkov
	$(UV) pip install --quiet --python .venv-checkov/bin/python 'checkov==3.3.30'

$(CLOUD_INIT_SCHEMA):
	images/cloud-init/fetch-schema.sh $(dir $@)

test: $(STAMP_TEST) $(CHECKOV) $(CLOUD_INIT_SCHEMA)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The edit loop (docs/performance.md: well under 90 s): lint, then the control plane's tests that train nothing, start
# no server (sshd, moto's server, the ARM fake, checkov) and run no CLI process per case: tests/unit and
# tests/providers. The payload's, the CLI end-to-end and the server tests run in `make test`.
CHECK_TESTS ?= tests/unit tests/providers
check: $(STAMP_TEST)
	$(BIN)/ruff check orchestrator benchmarks tests
	$(BIN)/mypy orchestrator benchmarks/keras_bench
	$(BIN)/python -m pytest -q -n 2 -m "not slow and not server" $(CHECK_TESTS) $(PYTEST_ARGS)

# The payload's Docker images (where Docker runs; not built in CI).
image:
	docker build -f images/docker/Dockerfile -t orchestrate-payload:gpu .
	docker build -f images/docker/Dockerfile --build-arg BASE=tensorflow/tensorflow:2.21.0 -t orchestrate-payload:cpu .

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
	$(BIN)/python benchmarks/bench_azure.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_prepare.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_campaign.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_eviction.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_copyback.py --output docs/performance.md
	$(BIN)/python benchmarks/bench_product_path.py --output docs/performance.md

clean:
	rm -rf $(VENV) .venv-checkov .cache build *.egg-info .pytest_cache .mypy_cache .ruff_cache
