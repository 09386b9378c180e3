# The two commands: `make demo` and `make test` work on a fresh clone (they create .venv if missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_DEMO := $(VENV)/.installed-payload
STAMP_TEST := $(VENV)/.installed-test
# The demo's state goes where the user keeps Orchestrate's: $ORCHESTRATE_HOME when set, else ~/.orchestrate.
DEMO_HOME ?= $(or $(ORCHESTRATE_HOME),$(HOME)/.orchestrate)
PYTEST_ARGS ?=
# The infrastructure checks' tools, outside the project's venv: checkov pins old boto3 and packaging (FACTS), and
# cloud-init's JSON schema comes from Debian's cloud-init package (not on PyPI).
CHECKOV := .venv-checkov/bin/checkov
CLOUD_INIT_SCHEMA := .cache/cloud-init/schema-cloud-config-v1.json

.PHONY: demo test lint bench clean image

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

$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet 'checkov==3.3.30'

$(CLOUD_INIT_SCHEMA):
	images/cloud-init/fetch-schema.sh $(dir $@)

test: $(STAMP_TEST) $(CHECKOV) $(CLOUD_INIT_SCHEMA)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

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

clean:
	rm -rf $(VENV) .venv-checkov .cache build *.egg-info .pytest_cache .mypy_cache .ruff_cache
