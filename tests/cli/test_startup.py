"""The hot commands start fast because they leave heavy libraries alone: checked on the modules a real process loads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Never on these paths: ORMs, SDKs, docker, rich (help is plain click text), YAML and CEL (a cached policy is JSON).
HEAVY = ("sqlalchemy", "sqlmodel", "anthropic", "openai", "ollama", "docker", "rich", "structlog", "celpy", "httpx")
# pydantic too: the records are dataclasses, TaskSpec is checked by hand, the policy is read from its JSON cache.
NO_PYDANTIC = ("pydantic", "pydantic_core")

PROBE = """
import json, sys
from aictl.cli.main import main
code = main(sys.argv[1:])
sys.stdout.flush()
sys.stderr.write("\\nMODULES " + json.dumps(sorted({m.split(".")[0] for m in sys.modules})) + "\\n")
sys.exit(code)
"""


def loaded(project, *args: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=project, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stderr.rsplit("MODULES ", 1)[1]))


# What enforcing a cached policy must not load: the schema (pydantic), the YAML loader, pathspec, the CEL library.
POLICY_SLOW = (
    "pydantic",
    "pydantic_core",
    "yaml",
    "pathspec",
    "cel",
    "celpy",
    "aictl.policy.schema",
    "aictl.policy.loader",
    "aictl.policy.merge",
    "aictl.policy.engine",
    "aictl.policy.request",
)

# Rules of every kind, and a condition that claim and complete never reach (it is on write_path).
RULES = """
  - id: fast-claims
    effect: allow
    match: {actions: [claim, complete], ai: ["w*"], task_types: [task]}
    limits: {max_runtime_s: 600}
  - id: no-prod
    effect: deny
    match: {actions: [claim], task_labels: [prod]}
  - id: big-writes
    effect: require_approval
    match: {actions: [write_path], paths: ["src/**", "!src/tmp/**"]}
    when: resource.paths.size() > 10
"""

GATE_PROBE = """
import json, sys
from aictl.policy.gate import load_gate
gate = load_gate(sys.argv[1])
effects = [gate.check(action, ai="w1", actor="w1", task={"id": 1, "type": "task", "labels": []}, epoch=1).effect
           for action in ("claim", "complete")]
print(json.dumps({"effects": effects, "modules": sorted(sys.modules)}))
"""


@pytest.fixture
def ruled(project):
    """The project's policy with more rules, its cache built by a first (miss) load."""
    policy = project / ".ai" / "policy.yaml"
    policy.write_text(policy.read_text().replace("rules:\n", "rules:" + RULES, 1))
    from aictl.policy.gate import load_gate

    assert load_gate(project) is not None
    return project


@pytest.fixture
def held(project, j):
    """A project with one task claimed by w1: (task id, epoch)."""
    t = j("task", "create", "hot")
    j("task", "create", "next")
    lease = j("task", "claim", "--owner", "w1")["lease"]
    return t["id"], lease["lease_epoch"]


def test_read_commands_and_help_load_no_pydantic_and_nothing_heavy(project, held):
    for args in (
        ["--help"],
        ["task", "--help"],
        ["task", "get", str(held[0]), "-o", "json"],
        ["task", "list", "-o", "json"],
        ["task", "list"],
    ):
        mods = loaded(project, *args)
        assert not mods & {*HEAVY, *NO_PYDANTIC}, (args, sorted(mods & {*HEAVY, *NO_PYDANTIC}))
        assert "typer" in mods  # the probe really ran the CLI


def test_lease_and_create_commands_load_no_pydantic_and_nothing_heavy(project, held):
    """The held fixture's claim compiled the policy into its cache, so these read it as JSON."""
    tid, epoch = held
    lease = ["--owner", "w1", "--epoch", str(epoch)]
    for args in (
        ["task", "create", "x", "-o", "json"],
        ["task", "claim", "--owner", "w2", "-o", "json"],
        ["task", "heartbeat", str(tid), *lease, "-o", "json"],
        ["task", "complete", str(tid), *lease, "-o", "json"],
    ):
        mods = loaded(project, *args)
        assert not mods & {*HEAVY, *NO_PYDANTIC}, (args, sorted(mods & {*HEAVY, *NO_PYDANTIC}))


def test_the_policy_gate_on_a_cached_policy_loads_no_pydantic_yaml_pathspec_or_cel(ruled):
    r = subprocess.run([sys.executable, "-c", GATE_PROBE, str(ruled)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["effects"] == ["allow", "allow"]
    assert not policy_slow(out["modules"]), sorted(policy_slow(out["modules"]))


def test_claim_and_complete_enforce_a_cached_policy_without_loading_its_schema_or_cel(ruled, j):
    t = j("task", "create", "hot")
    mods = loaded_all(ruled, "task", "claim", "--owner", "w1", "-o", "json")
    # pydantic itself still comes in with TaskSpec (aictl/tasks/service.py), so only the policy's own parts are checked.
    assert not policy_slow(mods, but=NO_PYDANTIC), sorted(policy_slow(mods))
    assert "aictl.policy.gate" in mods  # the policy was enforced
    epoch = j("task", "get", str(t["id"]))["lease_epoch"]
    mods = loaded_all(ruled, "task", "complete", str(t["id"]), "--owner", "w1", "--epoch", str(epoch), "-o", "json")
    assert not policy_slow(mods, but=NO_PYDANTIC), sorted(policy_slow(mods))
    decisions = j("audit", "decisions", "--task", str(t["id"]))
    assert [(d["action"], d["matched_rules"]) for d in decisions] == [
        ("claim", ["fast-claims", "task-lifecycle"]),
        ("complete", ["fast-claims", "task-lifecycle"]),
    ]


def loaded_all(project, *args: str) -> set[str]:
    """Every module (full dotted names) a real `aictl *args` process loaded."""
    probe = PROBE.replace('m.split(".")[0] for m in sys.modules', "m for m in sys.modules")
    r = subprocess.run([sys.executable, "-c", probe, *args], cwd=project, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stderr.rsplit("MODULES ", 1)[1]))


def policy_slow(modules, but: tuple[str, ...] = ()) -> set[str]:
    """The modules of POLICY_SLOW (or inside their packages) among `modules`, leaving out the packages in `but`."""
    return {m for m in modules if (m in POLICY_SLOW or m.split(".")[0] in POLICY_SLOW) and m.split(".")[0] not in but}
