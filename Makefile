# aictl: `make demo` runs the main job on the embedded SQLite store; `make test` installs, lints and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install demo lint test bench clean

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
	echo; echo "== part 2: an AI agent does a task (anthropic connector: the official SDK + aictl's tool loop)"; \
	echo "   The model is a scripted stand-in speaking the real Anthropic protocol (tests/fakeprovider), so no key"; \
	echo "   is needed; for the real API: --base-url https://api.anthropic.com and export ANTHROPIC_API_KEY."; \
	git -c user.name=demo -c user.email=demo@localhost commit -q --allow-empty -m "start"; \
	printf '%s' '[{"text": "I will add the script.", "tools": [{"name": "write_file", "input": {"path": "hello.py", "content": "print(\"hello from the agent\")\n"}}]}, {"text": "Added hello.py; it prints a greeting."}]' > "$$dir/../aictl-demo-turns-$$$$.json"; \
	PYTHONPATH="$(CURDIR)" $(CURDIR)/$(BIN)/python -m tests.fakeprovider --port 0 --url-file "$$dir/.git/fp-url" \
	  --script "$$dir/../aictl-demo-turns-$$$$.json" >/dev/null 2>&1 & fp=$$!; \
	trap 'kill $$fp 2>/dev/null; rm -rf "$$dir" "$$dir/../aictl-demo-turns-$$$$.json"' EXIT; \
	for _ in $$(seq 100); do [ -s "$$dir/.git/fp-url" ] && break; sleep 0.1; done; \
	export DEMO_API_KEY=demo-key; \
	aictl ai register scribe --connector anthropic --model claude-haiku-4-5 --base-url "$$(cat $$dir/.git/fp-url)" \
	  --api-key-env DEMO_API_KEY --capability python -o name; \
	aictl task create "Write hello.py that prints a greeting" --capability python --lock hello.py \
	  --verify "python3 hello.py" -o name; \
	echo "== which AI would take task 5, and why"; aictl route 5; \
	echo "== aictl task execute 5"; aictl task execute 5; \
	echo "== the agent's change, on branch aictl/task-5"; aictl task diff 5; \
	echo "== evidence"; aictl task evidence 5; \
	echo; echo "== part 3: the daemon runs queued work on its own"; \
	for i in 1 2 3; do aictl task create "Step $$i" --command "echo step $$i > step$$i.txt" --lock "step$$i.txt" -o name; done; \
	aictl daemon start --workers 2; \
	for _ in $$(seq 100); do [ "$$(aictl task list --status done -o name | wc -l)" -ge 8 ] && break; sleep 0.2; done; \
	aictl daemon status; aictl daemon stop --drain; \
	echo "== the queue now"; aictl task list; \
	echo "== the audit log (last 15 events)"; aictl audit log | tail -n 15; \
	echo "== audit verify"; aictl audit verify

# Lint first: a style or type error fails `make test` (and so .ci/run) before the slow tests start.
lint: install
	$(BIN)/ruff check aictl tests bench
	$(BIN)/ruff format --check aictl tests bench
	$(BIN)/mypy aictl

test: install lint
	@set +e; $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; exit $$rc

bench: install
	$(BIN)/python bench/claims.py --backend sqlite --workers 1,4 --tasks 5000
	$(BIN)/python bench/cli_latency.py
	$(BIN)/python bench/ready.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
