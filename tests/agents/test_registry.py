"""The AI registry on SQLite and PostgreSQL: CRUD, audit events, secret refusal, pauses, running counts."""

from __future__ import annotations

import pytest

from aictl.agents.registry import parse_config_pairs, validate_config
from aictl.domain.errors import Conflict, NotFound, UsageError
from aictl.domain.models import AIRecord


def test_register_get_list_and_each_change_is_an_audit_event(plane):
    a = plane.ai(
        "claude-1",
        "claude-code",
        model="sonnet",
        capabilities=["tests", "code", "code"],
        labels=[" fast "],
        max_concurrency=2,
        config={"binary": "/opt/claude", "max_turns": 20},
    )
    assert a.capabilities == ["code", "tests"] and a.labels == ["fast"] and a.max_concurrency == 2
    plane.ai("codex-1", "codex", model="gpt-5.5")
    assert plane.reg.get("claude-1") == a
    assert [x.id for x in plane.reg.list()] == ["claude-1", "codex-1"]
    plane.reg.label("claude-1", ["gpu", "fast"])
    plane.reg.unlabel("claude-1", ["fast"])
    plane.reg.disable("codex-1")
    plane.reg.enable("codex-1")
    plane.reg.pause("claude-1", 2e9, "429 from provider")
    plane.reg.resume("claude-1")
    plane.reg.remove("codex-1")
    assert plane.reg.get("claude-1").labels == ["gpu"]
    events = plane.events()
    assert [e["action"] for e in events] == [
        "ai_register",
        "ai_register",
        "ai_label",
        "ai_unlabel",
        "ai_disable",
        "ai_enable",
        "ai_pause",
        "ai_resume",
        "ai_remove",
    ]
    assert events[0]["after"]["config"] == {"binary": "/opt/claude", "max_turns": 20}
    assert events[2]["before"] == {"labels": ["fast"]} and events[2]["after"] == {"labels": ["fast", "gpu"]}
    assert events[6]["data"] == {"ai": "claude-1", "reason": "429 from provider", "until": 2e9}
    assert events[-1]["data"]["ai"] == "codex-1" and events[-1]["after"] is None
    with pytest.raises(NotFound, match="codex-1") as err:
        plane.reg.get("codex-1")
    assert "aictl ai list" in err.value.hint


def test_duplicate_refused_unless_replace_which_keeps_the_pause(plane):
    plane.ai("a1", "command", labels=["x"])
    plane.reg.pause("a1", 2e9, "limit")
    with pytest.raises(Conflict, match="already registered") as err:
        plane.ai("a1", "command")
    assert "--replace" in err.value.hint
    new = plane.reg.register(AIRecord(id="a1", connector="command", labels=["y"]), replace=True)
    assert new.labels == ["y"] and new.paused_until == 2e9
    assert plane.events()[-1]["data"] == {"ai": "a1", "replaced": True}


def test_dry_run_changes_nothing(plane):
    plane.reg.register(AIRecord(id="a1", connector="command"), dry_run=True)
    assert plane.reg.list() == [] and plane.events() == []


@pytest.mark.parametrize(
    "config, message",
    [
        ({"api_key": "abc"}, "config key 'api_key' looks like a secret"),
        ({"token": "abc"}, "looks like a secret"),
        ({"password": "hunter2"}, "looks like a secret"),
        ({"api_token": "abc"}, "config key 'api_token' looks like a secret"),
        ({"client_secret": "abc"}, "looks like a secret"),
        ({"db_password": "abc"}, "looks like a secret"),
        ({"max_tokens_param": "max_output"}, "max_tokens or max_completion_tokens"),
        ({"server": "llamafile"}, "must be auto or openai or llama.cpp"),
        ({"stream": "yes"}, "'stream' must be true or false"),
        ({"truncated": "ignore"}, "must be fail or continue"),
        (
            {"extra_headers": {"x": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"}},
            "value of 'extra_headers' looks like a secret",
        ),
        ({"api_key_env": "sk-proj-abcdefghijklmnopqrstuvwxyz0123"}, "NAME of an environment variable, not a secret"),
        ({"api_key_env": "my key"}, "NAME of an environment variable"),
        ({"base_url": "localhost:11434"}, "base_url must be an http"),
        ({"max_turns": "many"}, "max_turns' must be an integer"),
        ({"requires_gpu": "yes"}, "requires_gpu' must be true or false"),
        ({"args": ["--x", 3]}, "list of strings"),
        ({"api": "rest"}, "chat or responses"),
    ],
)
def test_secrets_and_bad_config_are_refused_with_a_clear_error(plane, config, message):
    with pytest.raises(UsageError, match=message) as err:
        plane.ai("x", "openai", config=config)
    assert err.value.hint is None or "api-key-env" in err.value.hint or "e.g." in err.value.hint
    assert plane.reg.list() == []


def test_token_limits_and_other_settings_are_not_taken_for_secrets(plane):
    config = {
        "max_tokens": 200,
        "max_tokens_param": "max_tokens",
        "stream_usage": False,
        "token_budget": 5,
        "tool_choice": "write_file",
    }
    assert plane.ai("llama", "openai", config=config).config == config


def test_a_connector_marks_its_own_secret_keys(plane):
    from aictl.agents.connectors.spec import ConnectorSpec, register

    register(ConnectorSpec(name="vault-thing", kind="sdk", factory=object, secret_keys=frozenset({"vault_ref"})))
    try:
        with pytest.raises(UsageError, match="config key 'vault_ref' looks like a secret"):
            validate_config("vault-thing", {"vault_ref": "abc"})
    finally:
        from aictl.agents.connectors.spec import SPECS

        SPECS.added.pop("vault-thing")


def test_secret_refusal_hint_says_use_api_key_env():
    with pytest.raises(UsageError) as err:
        validate_config("anthropic", {"api_key": "x"})
    assert "--api-key-env" in err.value.hint


def test_unknown_connector_and_bad_id_and_concurrency(plane):
    with pytest.raises(UsageError, match="unknown connector 'gpt'") as err:
        plane.ai("x", "gpt")
    assert "claude-code" in err.value.hint and "ollama" in err.value.hint
    with pytest.raises(UsageError, match="invalid AI id"):
        plane.ai("../etc", "command")
    with pytest.raises(UsageError, match="max_concurrency"):
        plane.ai("x", "command", max_concurrency=0)


def test_running_counts_and_remove_refuses_while_tasks_are_held(plane):
    plane.ai("a1", "command", max_concurrency=3)
    t1, t2, _ = plane.task("one"), plane.task("two"), plane.task("three")
    c1 = plane.svc.claim("w", task_id=t1.id, ai="a1")
    plane.svc.claim("w", task_id=t2.id, ai="a1")
    plane.svc.start(t1.id, "w", c1.lease.lease_epoch)
    assert plane.reg.running_counts() == {"a1": 2} and plane.reg.running("a1") == 2
    with pytest.raises(Conflict, match="holds 2 running task") as err:
        plane.reg.remove("a1")
    assert err.value.details["tasks"] == [t1.id, t2.id] and "--force" in err.value.hint
    plane.svc.complete(t1.id, "w", c1.lease.lease_epoch)
    assert plane.reg.running("a1") == 1
    removed = plane.reg.remove("a1", force=True)
    assert removed.id == "a1" and plane.events()[-1]["data"] == {"ai": "a1", "forced_with_tasks": [t2.id]}


def test_pause_never_shortens_a_longer_pause(plane):
    plane.ai("a1")
    plane.reg.pause("a1", 2e9, "usage limit until tomorrow")
    again = plane.reg.pause("a1", 1.9e9, "429")
    assert again.paused_until == 2e9 and again.pause_reason == "usage limit until tomorrow"
    assert plane.reg.pause("a1", 2.1e9, "longer").paused_until == 2.1e9


def test_config_pairs_parse_json_values_else_text():
    assert parse_config_pairs(
        ["max_turns=20", "requires_gpu=true", "model_size_gb=4.7", "api=chat", 'args=["-v"]', "note=a=b"]
    ) == {"max_turns": 20, "requires_gpu": True, "model_size_gb": 4.7, "api": "chat", "args": ["-v"], "note": "a=b"}
    with pytest.raises(UsageError, match="key=value"):
        parse_config_pairs(["oops"])
