"""The hierarchy: global → project → per-AI, replacement by id, final rules, final defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from aictl.domain.errors import ConfigError, UsageError
from aictl.policy import (
    PolicyRequest,
    default_global_policy_path,
    evaluate,
    explain,
    load_effective_policy,
    load_policy_text,
    merge_policies,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def req(ai: str | None = "claude-code", action: str = "write_path", **resource) -> PolicyRequest:
    return PolicyRequest.model_validate({"subject": {"ai": ai}, "action": action, "resource": resource})


@pytest.fixture
def dirs(tmp_path):
    project = tmp_path / "repo"
    (project / ".ai").mkdir(parents=True)
    return project, tmp_path / "global.yaml"


GLOBAL_FINAL = """\
version: 1
rules:
  - id: protect-secrets
    effect: deny
    final: true
    match: {actions: [write_path], paths: ['.env']}
  - id: writes
    effect: allow
    match: {actions: [write_path]}
    limits: {max_cost_usd: 5}
"""


def test_levels_accumulate_in_order_and_sources_are_recorded(dirs):
    project, global_file = dirs
    write(global_file, GLOBAL_FINAL)
    write(
        project / ".ai/policy.yaml",
        "version: 1\nrules:\n  - id: merges\n    effect: require_approval\n    match: {actions: [merge]}\n",
    )
    policy = load_effective_policy(project, global_path=global_file)
    assert [r.id for r in policy.rules] == ["protect-secrets", "writes", "merges"]
    assert [s.path for s in policy.sources] == [str(global_file), str(project / ".ai/policy.yaml")]
    assert all(len(s.sha256) == 64 for s in policy.sources)
    assert evaluate(policy, req(path=".env")).effect == "deny"
    assert evaluate(policy, req(action="merge")).effect == "require_approval"


def test_a_later_level_replaces_a_rule_with_the_same_id(dirs):
    project, global_file = dirs
    write(global_file, GLOBAL_FINAL)
    write(project / ".ai/policy.yaml", "version: 1\nrules:\n  - id: writes\n    effect: require_approval\n")
    policy = load_effective_policy(project, global_path=global_file)
    assert [r.id for r in policy.rules] == ["protect-secrets", "writes"]
    assert evaluate(policy, req(path="a.py")).effect == "require_approval"
    assert evaluate(policy, req(action="merge")).effect == "require_approval"  # the replacement has no match


def test_loosening_a_final_rule_is_an_error_naming_both_files_and_lines(dirs):
    project, global_file = dirs
    write(global_file, GLOBAL_FINAL)
    project_file = write(
        project / ".ai/policy.yaml",
        "version: 1\nrules:\n  - id: other\n    effect: deny\n"
        "  - id: protect-secrets\n    effect: allow\n"
        "    match: {actions: [write_path], paths: ['.env']}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_effective_policy(project, global_path=global_file)
    [issue] = caught.value.details["issues"]
    assert issue["file"] == str(project_file) and issue["line"] == 5 and issue["rule_id"] == "protect-secrets"
    assert f"from {global_file}:3" in issue["message"]
    assert "effect deny -> allow" in issue["message"]
    assert str(project_file) in caught.value.message and str(global_file) in caught.value.message


def test_narrowing_a_final_deny_rule_is_loosening(dirs):
    project, global_file = dirs
    write(global_file, GLOBAL_FINAL)
    write(
        project / ".ai/policy.yaml",
        "version: 1\nrules:\n  - id: protect-secrets\n    effect: deny\n"
        "    match: {actions: [write_path], paths: ['.env.local']}\n",
    )
    with pytest.raises(ConfigError, match="match changed"):
        load_effective_policy(project, global_path=global_file)


def test_tightening_a_final_rule_is_allowed(dirs):
    project, global_file = dirs
    write(global_file, GLOBAL_FINAL.replace("limits: {max_cost_usd: 5}", "limits: {max_cost_usd: 5}\n    final: true"))
    write(
        project / ".ai/policy.yaml",
        "version: 1\nrules:\n  - id: writes\n    effect: allow\n"
        "    match: {actions: [write_path]}\n    limits: {max_cost_usd: 1}\n",
    )
    policy = load_effective_policy(project, global_path=global_file)
    assert evaluate(policy, req(path="a.py")).limits.max_cost_usd == 1
    # The replacement stays final, so a per-AI level cannot loosen it again.
    assert next(r for r in policy.rules if r.id == "writes").final


def test_raising_a_final_limit_is_an_error(dirs):
    project, global_file = dirs
    write(global_file, GLOBAL_FINAL.replace("limits: {max_cost_usd: 5}", "limits: {max_cost_usd: 5}\n    final: true"))
    write(
        project / ".ai/policy.yaml",
        "version: 1\nrules:\n  - id: writes\n    effect: allow\n"
        "    match: {actions: [write_path]}\n    limits: {max_cost_usd: 50}\n",
    )
    with pytest.raises(ConfigError, match=r"max_cost_usd 5\.0 -> 50\.0"):
        load_effective_policy(project, global_path=global_file)


def test_final_rule_replaced_by_stricter_effect(dirs):
    project, global_file = dirs
    write(
        global_file,
        "version: 1\nrules:\n  - id: merges\n    effect: allow\n    final: true\n    match: {actions: [merge]}\n",
    )
    write(
        project / ".ai/policy.yaml",
        "version: 1\nrules:\n  - id: merges\n    effect: require_approval\n    match: {actions: [merge]}\n",
    )
    assert (
        evaluate(load_effective_policy(project, global_path=global_file), req(action="merge")).effect
        == "require_approval"
    )


def test_default_may_be_tightened_but_not_loosened_past_default_final(dirs):
    project, global_file = dirs
    write(global_file, "version: 1\ndefault: require_approval\ndefault_final: true\n")
    write(project / ".ai/policy.yaml", "version: 1\ndefault: deny\n")
    assert load_effective_policy(project, global_path=global_file).default.value == "deny"
    write(project / ".ai/policy.yaml", "version: 1\ndefault: allow\n")
    with pytest.raises(ConfigError, match="default allow loosens the final default require_approval"):
        load_effective_policy(project, global_path=global_file)


def test_default_without_default_final_may_be_loosened(dirs):
    project, global_file = dirs
    write(global_file, "version: 1\ndefault: deny\n")
    write(project / ".ai/policy.yaml", "version: 1\ndefault: allow\n")
    assert load_effective_policy(project, global_path=global_file).default.value == "allow"


def test_a_level_that_omits_default_inherits_it(dirs):
    project, global_file = dirs
    write(global_file, "version: 1\ndefault: allow\n")
    write(project / ".ai/policy.yaml", "version: 1\nrules: []\n")
    assert load_effective_policy(project, global_path=global_file).default.value == "allow"


PROJECT_WITH_AI = """\
version: 1
rules:
  - id: writes
    effect: allow
    match: {actions: [write_path]}
ai:
  "ollama-*":
    rules:
      - id: writes
        effect: allow
        match: {actions: [write_path], paths: ['docs/**']}
  codex:
    default: require_approval
    rules:
      - id: codex-no-merge
        effect: deny
        match: {actions: [merge]}
"""


def test_ai_sections_apply_only_to_matching_ais(dirs):
    project, _ = dirs
    write(project / ".ai/policy.yaml", PROJECT_WITH_AI)
    policy = load_effective_policy(project)
    assert evaluate(policy, req("ollama-small", path="src/a.py")).effect == "deny"
    assert evaluate(policy, req("ollama-small", path="docs/a.md")).effect == "allow"
    assert evaluate(policy, req("claude-code", path="src/a.py")).effect == "allow"
    assert evaluate(policy, req(None, path="src/a.py")).effect == "allow"
    assert evaluate(policy, req("codex", action="merge")).effect == "deny"
    assert evaluate(policy, req("claude-code", action="merge")).effect == "deny"  # the default
    assert evaluate(policy, req("codex", action="claim")).effect == "require_approval"  # codex's own default
    trace = {t.id: t for t in explain(policy, req("ollama-small", path="docs/a.md")).rules}
    assert trace["writes"].scope == "ollama-*"


def test_loading_for_one_ai_resolves_its_rules(dirs):
    project, _ = dirs
    write(project / ".ai/policy.yaml", PROJECT_WITH_AI)
    policy = load_effective_policy(project, ai_id="ollama-small")
    assert policy.ai_id == "ollama-small"
    assert policy.rules[0].match.paths == ["docs/**"]


def test_per_ai_file_comes_last_and_is_scoped_to_its_ai(dirs):
    project, global_file = dirs
    write(global_file, GLOBAL_FINAL)
    write(project / ".ai/policy.yaml", PROJECT_WITH_AI)
    ai_file = write(
        project / ".ai/policies/ai/codex.yaml", "version: 1\nrules:\n  - id: writes\n    effect: require_approval\n"
    )
    policy = load_effective_policy(project, global_path=global_file, ai_id="codex")
    assert str(ai_file) in [s.path for s in policy.sources]
    assert evaluate(policy, req("codex", path="a.py")).effect == "require_approval"
    assert evaluate(policy, req("claude-code", path="a.py")).effect == "allow"  # scoped to codex only
    # Without an ai_id every per-AI file is read, and each applies to its own AI.
    policy = load_effective_policy(project, global_path=global_file)
    assert evaluate(policy, req("codex", path="a.py")).effect == "require_approval"
    assert evaluate(policy, req("claude-code", path="a.py")).effect == "allow"


def test_per_ai_file_cannot_loosen_a_final_rule(dirs):
    project, global_file = dirs
    write(global_file, GLOBAL_FINAL)
    ai_file = write(
        project / ".ai/policies/ai/codex.yaml", "version: 1\nrules:\n  - id: protect-secrets\n    effect: allow\n"
    )
    for ai_id in ("codex", None):
        with pytest.raises(ConfigError) as caught:
            load_effective_policy(project, global_path=global_file, ai_id=ai_id)
        [issue] = caught.value.details["issues"]
        assert issue["file"] == str(ai_file) and issue["line"] == 3


def test_ai_section_cannot_loosen_a_final_rule_of_an_earlier_section(dirs):
    project, _ = dirs
    write(
        project / ".ai/policy.yaml",
        """\
version: 1
ai:
  "ollama-*":
    rules:
      - id: no-net
        effect: deny
        final: true
        match: {actions: [network]}
  ollama-small:
    rules:
      - id: no-net
        effect: allow
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_effective_policy(project)
    assert caught.value.details["issues"][0]["line"] == 11


def test_per_ai_file_with_an_ai_section_is_rejected(dirs):
    project, _ = dirs
    write(project / ".ai/policies/ai/codex.yaml", "version: 1\nai:\n  x: {}\n")
    with pytest.raises(ConfigError, match="per-AI file cannot have an 'ai:' section"):
        load_effective_policy(project)


def test_errors_from_several_files_are_reported_together(dirs):
    project, global_file = dirs
    write(global_file, "version: 1\nrules: [{id: a, effect: nope}]\n")
    write(project / ".ai/policy.yaml", "version: 1\nrulez: []\n")
    with pytest.raises(ConfigError) as caught:
        load_effective_policy(project, global_path=global_file)
    files = {i["file"] for i in caught.value.details["issues"]}
    assert files == {str(global_file), str(project / ".ai/policy.yaml")}


def test_missing_files_mean_default_deny(dirs):
    project, _ = dirs
    policy = load_effective_policy(project)
    assert policy.sources == [] and evaluate(policy, req(path="a")).effect == "deny"


def test_explicit_global_path_must_exist(dirs):
    project, global_file = dirs
    with pytest.raises(ConfigError, match="does not exist"):
        load_effective_policy(project, global_path=global_file)


def test_unsafe_ai_id_is_a_usage_error(dirs):
    project, _ = dirs
    with pytest.raises(UsageError):
        load_effective_policy(project, ai_id="../../etc/passwd")


def test_global_path_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AICTL_CONFIG_DIR", str(tmp_path / "conf"))
    assert default_global_policy_path() == tmp_path / "conf" / "policy.yaml"
    monkeypatch.delenv("AICTL_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_global_policy_path() == tmp_path / "xdg" / "aictl" / "policy.yaml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_global_policy_path() == tmp_path / "home" / ".config" / "aictl" / "policy.yaml"


def test_global_file_from_the_config_dir_is_loaded(monkeypatch, tmp_path, dirs):
    project, _ = dirs
    monkeypatch.setenv("AICTL_CONFIG_DIR", str(tmp_path / "conf"))
    write(tmp_path / "conf" / "policy.yaml", "version: 1\ndefault: allow\n")
    policy = load_effective_policy(project)
    assert policy.default.value == "allow" and policy.sources[0].path == str(tmp_path / "conf" / "policy.yaml")


def test_merge_policies_of_loaded_files():
    a = load_policy_text("version: 1\nrules:\n  - {id: x, effect: deny, final: true}\n", "a.yaml")
    b = load_policy_text("version: 1\nrules:\n  - {id: x, effect: allow}\n", "b.yaml")
    with pytest.raises(ConfigError, match=r"replaces final rule 'x' from a\.yaml:3"):
        merge_policies([a, b])
    assert merge_policies([b, a]).rules[0].effect.value == "deny"
