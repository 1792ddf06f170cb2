# aictl: `make demo` runs the main job on the embedded SQLite store; `make test` installs and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# A throwaway repository: init, a small DAG of tasks with path locks, two workers
# claiming and completing under leases, a stale worker fenced off, then the audit log.
demo: install
	@set -euo pipefail; \
	export PATH="$(CURDIR)/$(BIN):$$PATH" AICTL_ACTOR=demo@localhost; \
	dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; cd "$$dir"; git init -q; \
	echo "== aictl init in $$dir"; aictl init; \
	echo "== a DAG of tasks with path locks"; \
	printf '%s\n' 'tasks:' \
	  '  - {key: schema, title: "Add users table", priority: 5, locks: ["db/migrations/**"]}' \
	  '  - {key: api, title: "Users API", depends_on: [schema], locks: ["src/api/**"]}' \
	  '  - {key: docs, title: "Document the API", depends_on: [api], locks: ["docs/**"]}' \
	  '  - {key: lint, title: "Lint config", locks: ["src/**/*.toml"]}' > tasks.yaml; \
	aictl task create -f tasks.yaml; \
	echo "== what can run now, and why not"; aictl task ready; \
	echo "== worker A claims, starts, completes"; \
	epoch=$$(aictl task claim --owner worker-a -o json | $(CURDIR)/$(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)["lease"]["lease_epoch"])'); \
	aictl task start 1 --owner worker-a --epoch $$epoch -o name; \
	aictl task complete 1 --owner worker-a --epoch $$epoch --result '{"migration": "0007_users"}' -o name; \
	echo "== task 2 unblocked; worker B claims with a 1s lease and goes silent"; \
	aictl task claim --owner worker-b --id 2 --ttl 1 -o name; sleep 1.5; \
	echo "== worker C claims after the lease expired (epoch 2)"; \
	aictl task claim --owner worker-c --id 2 -o name; \
	echo "== worker B wakes up and tries to complete with its stale epoch 1:"; \
	if aictl task complete 2 --owner worker-b --epoch 1; then echo "BUG: stale epoch accepted"; exit 1; \
	else echo "   (rejected with exit code $$?)"; fi; \
	aictl task complete 2 --owner worker-c --epoch 2 -o name; \
	echo "== the queue now"; aictl task list; \
	echo "== the audit log"; aictl audit log

test: install
	@set +e; $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; exit $$rc

bench: install
	$(BIN)/python bench/claims.py --backend sqlite --workers 1,4 --tasks 5000
	$(BIN)/python bench/cli_latency.py
	$(BIN)/python bench/ready.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
