"""The fast gate (compiled policy, cached in the state dir) decides as the engine does; a stale cache is never used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aictl.domain.errors import ConfigError
from aictl.policy.compiled import compile_policy, from_json
from aictl.policy.engine import PolicyRequest, evaluate
from aictl.policy.gate import GateRequest, GateResource, GateSubject, PolicyGate, load_gate
from aictl.policy.loader import load_model_file
from aictl.policy.merge import load_effective_policy
from aictl.policy.records import make_record
from aictl.policy.schema import PolicyTestFile
from aictl.policy.testing import _load_policy, _policy_paths

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _cases():
    for test_file in sorted(POLICIES.rglob("*_test.yaml")):  # workflow overlays' (policies/workflows/) too
        tests, issues = load_model_file(test_file, PolicyTestFile)
        assert tests is not None, issues
        for case in tests.tests:
            paths = _policy_paths(test_file, case, tests.policy)  # as `aictl policy test` picks them
            yield pytest.param(paths, case.input, id=f"{test_file.stem}:{case.name}")


def _gate_request(request: PolicyRequest) -> GateRequest:
    return GateRequest(
        subject=GateSubject(**request.subject.model_dump()),
        action=request.action,
        resource=GateResource(**request.resource.model_dump()),
        context=request.context,
    )


@pytest.mark.parametrize(("paths", "case_input"), list(_cases()))
def test_gate_decides_every_example_case_as_the_engine_does(paths, case_input):
    policy = _load_policy(paths, {})  # as `aictl policy test` merges them (a policies/workflows/ file as an overlay)
    assert not isinstance(policy, str), policy
    # Through JSON, as a cache hit reads it.
    gate = PolicyGate(from_json(json.loads(json.dumps(compile_policy(policy)[1]))))
    request = PolicyRequest.model_validate(case_input)
    expected = make_record(request, evaluate(policy, request), gate.sources, ts=1.0)
    actual = make_record(_gate_request(request), gate.evaluate(_gate_request(request)), gate.sources, ts=1.0)
    for field in ("effect", "matched_rules", "reasons", "limits", "input", "resource", "ai", "task_id", "action"):
        assert getattr(actual, field) == getattr(expected, field), field


POLICY = """\
version: 1
default: allow
rules:
  - id: no-prod
    effect: deny
    match: {actions: [claim], task_labels: [prod]}
  - id: secrets
    effect: deny
    match: {actions: [write_path], paths: [".env", "secrets/**", "!secrets/README.md"]}
  - id: costly
    effect: allow
    match: {actions: [claim]}
    limits: {max_cost_usd: 2, sandbox: {network: false}}
"""


@pytest.fixture
def proj(tmp_path):
    (tmp_path / ".ai").mkdir()
    (tmp_path / ".ai" / "policy.yaml").write_text(POLICY)
    return tmp_path


def _caches(proj: Path) -> list[Path]:
    return sorted((proj / ".ai" / "cache").glob("policy-*.json"))


def test_a_hit_decides_as_a_miss_and_paths_need_no_recompiling(proj):
    first = load_gate(proj)
    assert len(_caches(proj)) == 1
    second = load_gate(proj)
    for gate in (first, second):
        assert gate.check("claim", ai="a", task={"id": 1, "labels": ["prod"]}).effect == "deny"
        record = gate.check("claim", ai="a", task={"id": 2, "labels": []})
        assert record.effect == "allow" and record.limits == {"max_cost_usd": 2.0, "sandbox": {"network": False}}
        assert gate.check("write_path", ai="a", path="secrets/key").matched_rules == ["secrets"]
        assert gate.check("write_path", ai="a", path="secrets/README.md").effect == "allow"
    assert (
        first.sources
        == second.sources
        == [{"path": str(proj / ".ai" / "policy.yaml"), "sha256": first.sources[0]["sha256"]}]
    )


def test_an_edited_policy_applies_at_once_and_the_old_cache_goes(proj):
    assert load_gate(proj).check("claim", ai="a", task={"id": 1}).effect == "allow"
    old = _caches(proj)
    (proj / ".ai" / "policy.yaml").write_text(
        POLICY.replace("default: allow", "default: deny")
        + """\
  - id: nobody-claims
    effect: deny
    match: {actions: [claim]}
"""
    )
    record = load_gate(proj).check("claim", ai="a", task={"id": 1})
    assert record.effect == "deny" and record.matched_rules == ["costly", "nobody-claims"]
    assert _caches(proj) and _caches(proj) != old


@pytest.mark.parametrize("damage", ["garbage", "truncated", "tampered rule", "other sources", "key of another"])
def test_a_corrupt_or_tampered_cache_is_ignored_and_rebuilt(proj, damage):
    load_gate(proj)
    (cache,) = _caches(proj)
    stored = json.loads(cache.read_text())
    if damage == "garbage":
        cache.write_bytes(b"\x00\xffnot json")
    elif damage == "truncated":
        cache.write_text(cache.read_text()[:100])
    elif damage == "tampered rule":  # a deny turned into an allow, the rest left as it was
        stored["body"]["layers"][0]["rules"][0]["effect"] = "allow"
        cache.write_text(json.dumps(stored))
    elif damage == "other sources":
        stored["body"]["sources"][0]["sha256"] = "0" * 64
        cache.write_text(json.dumps(stored))
    else:
        stored["key"] = "f" * 64
        cache.write_text(json.dumps(stored))
    assert load_gate(proj).check("claim", ai="a", task={"id": 1, "labels": ["prod"]}).effect == "deny"
    rebuilt = json.loads(cache.read_text())
    assert rebuilt["body"]["layers"][0]["rules"][0]["effect"] == "deny"


def test_a_bad_file_fails_with_the_loaders_error_even_when_an_old_cache_exists(proj):
    load_gate(proj)
    (proj / ".ai" / "policy.yaml").write_text(
        POLICY.replace("actions: [claim], task_labels", "actions: [clam], task_labels")
    )
    with pytest.raises(ConfigError) as expected:
        load_effective_policy(proj)
    with pytest.raises(ConfigError) as actual:
        load_gate(proj)
    assert str(actual.value) == str(expected.value) and actual.value.details == expected.value.details
    assert ".ai/policy.yaml:6:23: rule 'no-prod': match.actions[0]: unknown action 'clam'" in str(actual.value)


def test_per_ai_files_and_the_global_file_are_part_of_the_key(proj, tmp_path_factory, monkeypatch):
    config = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("AICTL_CONFIG_DIR", str(config))
    assert load_gate(proj).check("claim", ai="codex", task={"id": 1}).effect == "allow"
    (proj / ".ai" / "policies" / "ai").mkdir(parents=True)
    (proj / ".ai" / "policies" / "ai" / "codex.yaml").write_text(
        "version: 1\nrules:\n  - id: codex-no-claims\n    effect: deny\n    match: {actions: [claim]}\n"
    )
    gate = load_gate(proj)
    assert gate.check("claim", ai="codex", task={"id": 1}).matched_rules == ["costly", "codex-no-claims"]
    assert gate.check("claim", ai="claude", task={"id": 1}).effect == "allow"
    (config / "policy.yaml").write_text("version: 1\ndefault: deny\n")
    gate = load_gate(proj)
    assert len(gate.sources) == 3
    assert gate.check("write_path", ai="claude", path="src/a.py").effect == "allow"  # the project's default
    (config / "policy.yaml").write_text(
        "version: 1\nrules:\n  - id: g\n    effect: deny\n    match: {actions: [push]}\n"
    )
    assert load_gate(proj).check("push", ai="claude").matched_rules == ["g"]


def test_a_condition_compiles_when_first_reached(proj):
    (proj / ".ai" / "policy.yaml").write_text(
        POLICY
        + """\
  - id: urgent
    effect: require_approval
    match: {actions: [claim]}
    when: resource.task.priority >= 9
"""
    )
    gate = load_gate(proj)
    gate = load_gate(proj)  # a hit
    (rule,) = [r for r in gate.policy.resolve("a").rules if r.id == "urgent"]
    assert gate.check("write_path", ai="a", path="x").effect == "allow" and rule._program is None
    assert gate.check("claim", ai="a", task={"id": 1, "priority": 9}).effect == "require_approval"
    assert gate.check("claim", ai="a", task={"id": 1, "priority": 1}).effect == "allow"
    assert rule._program is not None
