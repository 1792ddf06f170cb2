"""Properties over random policies and requests: evaluation never raises, and a matching deny always wins."""

from __future__ import annotations

import posixpath
from fnmatch import fnmatchcase

import pathspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aictl.policy import KNOWN_ACTIONS, PolicyFile, PolicyRequest, evaluate, explain, merge_policies
from aictl.policy.paths import compile_paths

AIS = ["claude-code", "claude-opus", "codex", "ollama-small", "gpt"]
LABELS = ["trusted", "premium", "local", "untrusted"]
PATH_PARTS = ["src", "docs", "secrets", ".github", "workflows", "a.py", ".env", "k.pem", "migrations", "x"]
PATTERNS = [".env", "secrets/**", "*.pem", "docs/**", "src/*.py", "**/x", "!secrets/README.md", "migrations/", "/a.py"]
CONDITIONS = [
    "true",
    "false",
    'subject.ai == "codex"',
    "resource.task.priority > 5",  # errors when the task has no priority
    '"trusted" in subject.ai_labels',
    "context.hour < 9",
    'resource.paths.exists(p, p.startsWith("src/"))',
    "resource.task.priority",  # not a bool
    'resource.command.startsWith("git")',  # errors when there is no command
    "1 / 0 == 1",
    "context.big > 1",  # big may be text, NaN, a huge int or a set (which CEL cannot hold)
    'resource.extra.tags.exists(t, t == "x")',
]

some = lambda values: st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True)  # noqa: E731

match_st = st.fixed_dictionaries(
    {},
    optional={
        "ai": some(["claude-*", "codex", "ollama-*", "*"]),
        "ai_labels": some(LABELS),
        "actions": some(list(KNOWN_ACTIONS)),
        "paths": some(PATTERNS),
        "commands": some(["rm -rf *", "git push*", "pytest*", "*"]),
        "task_labels": some(["migration", "ui"]),
        "task_types": some(["bugfix", "feature"]),
    },
)

limits_st = st.fixed_dictionaries(
    {},
    optional={
        "max_cost_usd": st.floats(0, 10),
        "max_runtime_s": st.integers(0, 3600),
        "allowed_tools": some(["Read", "Edit", "Bash"]),
        "sandbox": st.fixed_dictionaries(
            {}, optional={"network": st.booleans(), "backend": st.sampled_from(["local", "docker"])}
        ),
    },
)


@st.composite
def policies(draw):
    count = draw(st.integers(0, 12))
    rules = []
    for index in range(count):
        rule = {
            "id": f"r{index}",
            "effect": draw(st.sampled_from(["allow", "deny", "require_approval"])),
            "match": draw(match_st),
        }
        if draw(st.booleans()):
            rule["when"] = draw(st.sampled_from(CONDITIONS))
        if draw(st.booleans()):
            rule["limits"] = draw(limits_st)
        rules.append(rule)
    data = {"version": 1, "default": draw(st.sampled_from(["allow", "deny", "require_approval"])), "rules": rules}
    return merge_policies([PolicyFile.model_validate(data)])


paths_st = st.lists(st.sampled_from(PATH_PARTS), min_size=1, max_size=4).map("/".join)


@st.composite
def requests(draw):
    task = draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "priority": st.one_of(st.integers(-5, 20), st.text(max_size=3)),
                    "labels": st.lists(
                        st.one_of(st.sampled_from(["migration", "ui", "other"]), st.integers(), st.just([1]))
                    ),
                    "type": st.sampled_from(["bugfix", "feature"]),
                },
            ),
        )
    )
    return PolicyRequest.model_validate(
        {
            "subject": {
                "ai": draw(st.one_of(st.none(), st.sampled_from(AIS))),
                "ai_labels": draw(st.lists(st.sampled_from(LABELS))),
            },
            "action": draw(st.sampled_from(list(KNOWN_ACTIONS))),
            "resource": {
                "task": task,
                "path": draw(st.one_of(st.none(), paths_st)),
                "paths": draw(st.lists(paths_st, max_size=3)),
                "command": draw(
                    st.one_of(st.none(), st.sampled_from(["rm -rf /", "git push origin", "pytest -q", ""]))
                ),
                "extra": draw(
                    st.fixed_dictionaries(
                        {}, optional={"tags": st.one_of(st.lists(st.text(max_size=2)), st.none(), st.integers())}
                    )
                ),
            },
            "context": draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "hour": st.integers(0, 23),
                        "big": st.one_of(
                            st.integers(), st.integers(2**63, 2**80), st.floats(allow_nan=True), st.text(), st.just({1})
                        ),
                    },
                )
            ),
        }
    )


def reference_match(rule, request) -> bool:
    """A slow, obvious re-implementation of the match fields (conditions excluded)."""
    m, subject, resource = rule.match, request.subject, request.resource
    task = resource.task or {}
    paths = [posixpath.normpath(p).lstrip("/") for p in ([resource.path] if resource.path else []) + resource.paths]
    checks = [
        m.actions is None or request.action in m.actions,
        m.ai is None or (subject.ai is not None and any(fnmatchcase(subject.ai, g) for g in m.ai)),
        m.ai_labels is None or set(m.ai_labels) <= set(subject.ai_labels),
        m.task_types is None or task.get("type") in m.task_types,
        m.task_labels is None or any(label in m.task_labels for label in task.get("labels") or []),
        m.commands is None
        or (
            resource.command is not None and any(fnmatchcase(" ".join(resource.command.split()), g) for g in m.commands)
        ),
        m.paths is None or any(pathspec.PathSpec.from_lines("gitignore", m.paths).match_file(p) for p in paths),
    ]
    return all(checks)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), requests())
def test_evaluate_never_raises_and_a_matching_deny_wins(policy, request):
    decision = evaluate(policy, request)
    explanation = explain(policy, request)
    assert decision.effect == explanation.decision.effect
    assert decision.matched_rules == [t.id for t in explanation.rules if t.matched]

    # Independently of the engine: a deny rule without a condition that matches means deny.
    for rule in policy.rules:
        if rule.when is None:
            assert (rule.id in decision.matched_rules) == reference_match(rule, request), rule
            if rule.effect.value == "deny" and reference_match(rule, request):
                assert decision.effect == "deny"

    effects = {t.effect for t in explanation.rules if t.matched}
    if "deny" in effects:
        assert decision.effect == "deny"
    elif "require_approval" in effects:
        assert decision.effect == "require_approval"
    elif "allow" in effects:
        assert decision.effect == "allow"
    else:
        assert decision.default_applied and decision.effect == policy.default.value
    # A non-matching rule always says which part failed.
    assert all(t.failed and t.why for t in explanation.rules if not t.matched)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=4), paths_st)
def test_path_matcher_agrees_with_pathspec(patterns, path):
    expected = pathspec.PathSpec.from_lines("gitignore", patterns).match_file(path)
    assert bool(compile_paths(tuple(patterns)).match(path)) == expected
