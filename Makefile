# kfm-ops Makefile. The stack-* targets drive the local service stack (devstack/stack, docs/local-stack.md).
# Other targets (test, lint, ...) are added below by their owners.

STACK ?= devstack/stack
SERVICES ?=
SERVICE ?=
N ?= 100

.PHONY: stack-install stack-up stack-down stack-status stack-logs stack-reset

## install everything the local stack needs (idempotent)
stack-install:
	$(STACK) install

## start the local stack (or SERVICES="redis opa") and wait until every service answers a real query
stack-up:
	$(STACK) up $(SERVICES)

## stop the local stack (or SERVICES=...); leaves no process running
stack-down:
	$(STACK) down $(SERVICES)

## one line per service; fails if any is down
stack-status:
	$(STACK) status

## show a service log: make stack-logs SERVICE=neo4j [N=200]
stack-logs:
	@test -n "$(SERVICE)" || { echo "usage: make stack-logs SERVICE=<postgis|opensearch|neo4j|redis|opa|llm|toxiproxy|prometheus|pushgateway> [N=100]"; exit 2; }
	$(STACK) logs $(SERVICE) -n $(N)

## stop the stack and delete .devstack/ (the user caches ~/.m2, Go, pip are kept)
stack-reset:
	$(STACK) reset


# --- kfm-ops: the venv, the sample catalog, the main job and the tests --------------------

VENV ?= .venv
PY := $(VENV)/bin/python
# In a checkout the harness talks to the local stack unless a .env says otherwise.
export KFM_ENV_FILE ?= $(if $(wildcard .env),.env,.env.example)
REPORT ?= reports/smoke.json

.PHONY: venv unit catalog demo test lint bench

## a venv with kfm-ops (editable) and the dev tools, at the pinned versions; pip's wheel cache makes repeats fast
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -c constraints.txt
	touch $@

## load the sample catalog and derive the search index, the graph and the cache from it
catalog: venv
	$(VENV)/bin/kfm-maint migrate --environment dev --no-verify
	$(VENV)/bin/kfm-maint identity stamp --targets search,graph,cache --no-verify
	$(VENV)/bin/kfm-maint sample-data init --no-verify
	$(VENV)/bin/kfm-maint reindex --targets search,graph --prune --no-verify
	$(VENV)/bin/kfm-maint cache rebuild --no-verify

## the main job: local stack up, catalog derived, smoke checks with a JSON report
demo: stack-install stack-up catalog
	$(PY) -m pytest opschecks -m smoke -p no:cacheprovider --json-report --json-report-file=$(REPORT)
	@echo "JSON report: $(abspath $(REPORT))"

## the unit layer: the pure code, no service needed, in seconds
unit: venv
	$(PY) -m pytest tests/unit -p no:cacheprovider -q

## the whole test suite: the unit layer first, then every check on the healthy stack and kfm-ops's own tests
test: unit stack-install stack-up catalog
	$(PY) -m pytest -p no:cacheprovider --ignore=tests/unit

## ruff and mypy
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
