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
	@test -n "$(SERVICE)" || { echo "usage: make stack-logs SERVICE=<postgis|opensearch|neo4j|redis|opa|llm|toxiproxy> [N=100]"; exit 2; }
	$(STACK) logs $(SERVICE) -n $(N)

## stop the stack and delete .devstack/ (the user caches ~/.m2, Go, pip are kept)
stack-reset:
	$(STACK) reset

