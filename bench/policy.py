"""Cost of a policy decision: evaluate, make_record, write_record, and of importing aictl.policy.

    .venv/bin/python bench/policy.py [--n 20000] [--records 2000] [--import-runs 7]

Prints one JSON object on stdout (progress on stderr):

* evaluate.examples.<policy>: `evaluate` on each example policy in policies/, cycling through a
  mix of requests (the inputs of its *_test.yaml plus a common mix of actions, AIs and paths).
* evaluate.synthetic_20_rules: a 20-rule policy, 10 of the rules with a CEL `when`.
* make_record: building a Decision Record (request dump, secret redaction, hashes).
* write_record_sqlite: one write transaction per record (as a refused action writes it), and
  the same INSERTs batched in one transaction (the cost without the commit).
* gate_check: PolicyGate.check = evaluate + make_record, what the task plane pays per action.
* load: reading, validating and merging each example file (every CLI command does this once).
* import: `import aictl.policy` in a fresh interpreter (wall clock, minus `python -c pass`), the
  part of it that the claim path pays on top of what it imports anyway, and the modules that
  dominate `python -X importtime`.

Every distribution: p50/p90/p99/max in milliseconds, and per_s = calls / total time. Target:
under 1 ms per decision. No timing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_T0 = time.monotonic()

COMMON_MIX: list[dict[str, Any]] = [
    {"subject": {"ai": ai}, "action": action, "resource": resource}
    for ai in ("claude-code", "codex", "ollama-small")
    for action, resource in (
        ("claim", {"task": {"id": 1, "title": "t", "type": "bugfix", "priority": 3, "labels": ["backend"]}}),
        ("start", {"task": {"id": 2, "title": "t", "type": "feature", "priority": 9, "labels": ["migration"]}}),
        ("write_path", {"path": "src/app/main.py"}),
        ("write_path", {"path": ".env"}),
        ("write_path", {"paths": ["docs/a.md", ".github/workflows/ci.yml"]}),
        ("run_command", {"command": "pytest -q tests/"}),
        ("run_command", {"command": "git push --force origin main"}),
        ("network", {"extra": {"host": "pypi.org"}}),
        ("merge", {"task": {"id": 3, "labels": []}}),
    )
]

SYNTHETIC = """
version: 1
default: deny
rules:
  - {id: lifecycle, effect: allow, match: {actions: [claim, start, heartbeat, complete, fail, release]}}
  - {id: files, effect: allow, match: {actions: [read_path, write_path, delete_path]}}
  - {id: secrets, effect: deny, match: {actions: [read_path, write_path], paths: [".env", "secrets/**", "*.pem"]}}
  - {id: ci, effect: require_approval, match: {actions: [write_path], paths: [".github/workflows/**"]}}
  - {id: commands, effect: allow, match: {actions: [run_command]}}
  - {id: push, effect: deny, match: {actions: [run_command], commands: ["git push*", "sudo *"]}}
  - {id: network, effect: deny, match: {actions: [network]}}
  - {id: merge, effect: require_approval, match: {actions: [merge]}}
  - {id: interns, effect: deny, match: {ai: ["intern-*"], task_labels: [prod]}}
  - {id: bugfix-evidence, effect: allow, match: {actions: [complete], task_types: [bugfix]}, limits: {require_evidence: [test_report]}}
  - {id: big-tasks, effect: require_approval, match: {actions: [start]}, when: 'resource.task.priority >= 8'}
  - {id: migrations, effect: require_approval, when: 'has(resource.task.labels) && "migration" in resource.task.labels'}
  - {id: vendor, effect: deny, match: {actions: [write_path]}, when: 'resource.paths.exists(p, p.startsWith("vendor/"))'}
  - {id: docs-host, effect: allow, match: {actions: [network]}, when: 'resource.extra.host.endsWith("docs.python.org")'}
  - {id: local-models, effect: deny, match: {actions: [run_command]}, when: 'subject.ai.startsWith("ollama-")'}
  - {id: main-branch, effect: require_approval, match: {actions: [merge]}, when: 'has(context.branch) && context.branch == "main"'}
  - {id: trusted, effect: allow, match: {actions: [merge]}, when: '"trusted" in subject.ai_labels'}
  - {id: costly, effect: deny, match: {actions: [start]}, when: 'has(resource.task.estimated_cost_usd) && double(resource.task.estimated_cost_usd) > 10.0'}
  - {id: humans, effect: allow, match: {actions: [approve]}, when: 'subject.ai == null'}
  - {id: retries, effect: deny, match: {actions: [claim]}, when: 'has(resource.task.attempts) && resource.task.attempts > 5'}
"""


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def dist(samples_ns: list[int]) -> dict[str, float]:
    """p50/p90/p99/max in ms (nearest rank) and calls per second over the summed time."""
    xs = sorted(samples_ns)

    def pct(p: float) -> float:
        return round(xs[min(len(xs) - 1, max(0, round(p * len(xs)) - 1))] / 1e6, 4)

    total = sum(xs)
    return {
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(xs[-1] / 1e6, 4),
        "per_s": round(len(xs) / (total / 1e9)) if total else 0,
        "n": len(xs),
    }


def timed(fn: Callable[[Any], Any], items: list[Any], n: int) -> list[int]:
    for item in items:  # warm: resolve caches, CEL programs
        fn(item)
    clock = time.perf_counter_ns
    samples = []
    for i in range(n):
        item = items[i % len(items)]
        started = clock()
        fn(item)
        samples.append(clock() - started)
    return samples


def example_requests(test_file: Path) -> list[dict[str, Any]]:
    import yaml

    if not test_file.is_file():
        return []
    data = yaml.safe_load(test_file.read_text()) or {}
    return [case["input"] for case in data.get("tests", []) if "policy" not in case]


def bench_evaluate(n: int) -> dict[str, Any]:
    from aictl.policy import PolicyRequest, evaluate, load_policy_file, load_policy_text, merge_policies

    out: dict[str, Any] = {"examples": {}}
    for path in sorted((ROOT / "policies").glob("*.yaml")):
        if path.name.endswith("_test.yaml"):
            continue
        policy = merge_policies([load_policy_file(path)])
        raw = example_requests(path.with_name(f"{path.stem}_test.yaml")) + COMMON_MIX
        requests = [PolicyRequest.model_validate(r) for r in raw]
        effects: dict[str, int] = {}
        for request in requests:
            effect = evaluate(policy, request).effect
            effects[effect] = effects.get(effect, 0) + 1
        log(f"evaluate {path.name}: {len(requests)} requests x {n}")
        out["examples"][path.stem] = {
            **dist(timed(partial(evaluate, policy), requests, n)),
            "rules": len(policy.rules),
            "requests": len(requests),
            "effects": effects,
        }
    synthetic = merge_policies([load_policy_text(SYNTHETIC, "synthetic.yaml")])
    mix = [
        *COMMON_MIX,
        {"subject": {"ai": "claude-code", "ai_labels": ["trusted"]}, "action": "merge", "context": {"branch": "main"}},
        {"subject": {"ai": "codex"}, "action": "write_path", "resource": {"paths": ["vendor/x.py", "src/y.py"]}},
        {
            "subject": {"ai": "codex"},
            "action": "start",
            "resource": {"task": {"priority": 2, "labels": [], "estimated_cost_usd": 12}},
        },
        {"subject": {"ai": "intern-1"}, "action": "claim", "resource": {"task": {"labels": ["prod"], "attempts": 7}}},
    ]
    requests = [PolicyRequest.model_validate(r) for r in mix]
    log(f"evaluate synthetic: {len(requests)} requests x {n}")
    with_when = sum(1 for rule in synthetic.rules if rule.when)
    out["synthetic_20_rules"] = {
        **dist(timed(lambda r: evaluate(synthetic, r), requests, n)),
        "rules": len(synthetic.rules),
        "rules_with_when": with_when,
        "requests": len(requests),
    }
    return out


def bench_records(n: int, records: int) -> dict[str, Any]:
    from aictl.policy import PolicyRequest, evaluate, load_policy_file, merge_policies
    from aictl.policy.gate import PolicyGate
    from aictl.policy.records import make_record, write_record
    from aictl.store import open_store

    policy = merge_policies([load_policy_file(ROOT / "policies" / "default.yaml")])
    gate = PolicyGate(policy)
    request = PolicyRequest.model_validate(
        {
            "subject": {"ai": "claude-code", "task_id": 7, "lease_epoch": 2, "actor": "claude-code"},
            "action": "claim",
            "resource": {
                "task": {
                    "id": 7,
                    "title": "Fix the login bug",
                    "type": "bugfix",
                    "priority": 3,
                    "status": "claimed",
                    "labels": ["auth", "backend"],
                    "required_capabilities": [],
                    "lock_paths": ["src/auth/**"],
                    "exclusive": False,
                    "attempts": 0,
                    "max_attempts": 3,
                }
            },
        }
    )
    decision = evaluate(policy, request)
    log(f"make_record x {n}")
    out: dict[str, Any] = {"make_record": dist(timed(lambda _: make_record(request, decision, gate.sources), [0], n))}
    task = request.resource.task
    log(f"gate.check x {n}")
    out["gate_check"] = dist(
        timed(lambda _: gate.check("claim", ai="claude-code", actor="claude-code", task=task, epoch=2), [0], n)
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'state.db'}")
        built = [make_record(request, decision, gate.sources) for _ in range(records * 2)]

        def one_tx(i: int) -> None:
            with store.write() as tx:
                write_record(tx, built[i])

        log(f"write_record, one transaction each x {records}")
        out["write_record_sqlite"] = {"one_tx_each": dist(_run_indexed(one_tx, records))}
        clock = time.perf_counter_ns
        samples = []
        with store.write() as tx:
            for record in built[records:]:
                started = clock()
                write_record(tx, record)
                samples.append(clock() - started)
        out["write_record_sqlite"]["batched_one_tx"] = dist(samples)
        out["write_record_sqlite"]["note"] = (
            "one_tx_each includes BEGIN IMMEDIATE + COMMIT (WAL fsync policy of "
            "the store); batched is the INSERTs + the chained audit event only"
        )
        store.close()
    return out


def _run_indexed(fn: Callable[[int], Any], count: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    for i in range(count):
        started = clock()
        fn(i)
        samples.append(clock() - started)
    return samples


def bench_load() -> dict[str, Any]:
    from aictl.policy import load_policy_file, merge_policies

    out = {}
    for path in sorted((ROOT / "policies").glob("*.yaml")):
        if path.name.endswith("_test.yaml"):
            continue
        samples = []
        for _ in range(30):
            started = time.perf_counter_ns()
            merge_policies([load_policy_file(path)]).resolve("claude-code")
            samples.append(time.perf_counter_ns() - started)
        out[path.stem] = dist(samples)
    return out


def _python(code: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *flags, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
    )


def _wall(code: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        _python(code).check_returncode()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _importtime(code: str) -> list[tuple[str, int, int]]:
    """(module, self us, cumulative us) for each line of -X importtime."""
    rows = []
    for line in _python(code, "-X", "importtime").stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|")
        rows.append((name.strip(), int(self_us), int(cumulative_us)))
    return rows


def bench_import(runs: int) -> dict[str, Any]:
    log(f"import time: {runs} fresh interpreters per measurement")
    baseline = _wall("pass", runs)
    policy = _wall("import aictl.policy", runs)
    claim_path = "import aictl.cli.main, aictl.tasks.service, aictl.store.sqlite, aictl.config"
    incremental = []
    for _ in range(runs):
        result = _python(
            f"{claim_path}\nimport time\nt = time.perf_counter()\n"
            "import aictl.policy, aictl.policy.gate, aictl.policy.records\n"
            "print(time.perf_counter() - t)"
        )
        incremental.append(float(result.stdout.strip()))
    cel = []
    for _ in range(runs):
        result = _python(
            "import aictl.policy\nfrom aictl.policy.conditions import _load_cel\nimport time\n"
            "t = time.perf_counter(); _load_cel(); print(time.perf_counter() - t)"
        )
        cel.append(float(result.stdout.strip()))

    # Median self time per module across runs; grouped by top-level package.
    per_module: dict[str, list[int]] = {}
    totals = []
    for _ in range(runs):
        rows = _importtime("import aictl.policy")
        totals.append(next(c for name, _s, c in rows if name == "aictl.policy"))
        for name, self_us, _c in rows:
            per_module.setdefault(name, []).append(self_us)
    medians = {name: statistics.median(v) for name, v in per_module.items()}
    groups: dict[str, float] = {}
    for name, us in medians.items():
        top = name.split(".")[0] if not name.startswith("aictl.") else name
        groups[top] = groups.get(top, 0) + us
    top_modules = sorted(medians.items(), key=lambda kv: kv[1], reverse=True)[:12]
    top_groups = sorted(groups.items(), key=lambda kv: kv[1], reverse=True)[:12]
    return {
        "python_pass_s": round(baseline, 3),
        "import_aictl_policy_wall_s": round(policy, 3),
        "import_aictl_policy_minus_startup_s": round(policy - baseline, 3),
        "importtime_cumulative_s": round(statistics.median(totals) / 1e6, 3),
        "on_claim_path_after_cli_task_store_imports_s": round(statistics.median(incremental), 3),
        "first_cel_load_s": round(statistics.median(cel), 3),
        "top_modules_self_ms": {name: round(us / 1e3, 1) for name, us in top_modules},
        "top_packages_self_ms": {name: round(us / 1e3, 1) for name, us in top_groups},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="evaluations per policy")
    parser.add_argument("--records", type=int, default=2000, help="records written to SQLite")
    parser.add_argument("--import-runs", type=int, default=7, help="fresh interpreters per import measurement")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "evaluate": bench_evaluate(args.n),
    }
    result.update(bench_records(args.n, args.records))
    log("load")
    result["load"] = bench_load()
    result["import"] = bench_import(args.import_runs)
    worst = max(
        [v["p99_ms"] for v in result["evaluate"]["examples"].values()]
        + [result["evaluate"]["synthetic_20_rules"]["p99_ms"]]
    )
    result["target"] = {"decision_under_ms": 1.0, "worst_evaluate_p99_ms": worst, "met": worst < 1.0}
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
