"""`aictl ai …` and `aictl route` as users and CI drive them: exit codes, JSON on stdout, JSON errors on stderr."""

from __future__ import annotations

import json
import time

import pytest


def test_register_list_get_and_the_flags_land_in_config(project, cli, j):
    assert j("ai", "list") == []
    a = j(
        "ai",
        "register",
        "claude-1",
        "--connector",
        "claude-code",
        "--model",
        "sonnet",
        "--capability",
        "code",
        "--capability",
        "tests",
        "--label",
        "fast",
        "--max-concurrency",
        "2",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--binary",
        "/opt/claude",
        "--arg",
        "--verbose",
        "--arg",
        "-x",
        "--api-key-env",
        "MY_KEY",
        "--config",
        "max_turns=20",
        "--config",
        "requires_gpu=false",
    )
    assert a["capabilities"] == ["code", "tests"] and a["labels"] == ["fast"] and a["max_concurrency"] == 2
    assert a["config"] == {
        "base_url": "http://127.0.0.1:9/v1",
        "binary": "/opt/claude",
        "args": ["--verbose", "-x"],
        "api_key_env": "MY_KEY",
        "max_turns": 20,
        "requires_gpu": False,
    }
    j("ai", "register", "codex-1", "--connector", "codex", "-c", "code,docs")
    assert [x["id"] for x in j("ai", "list")] == ["claude-1", "codex-1"]
    assert j("ai", "get", "codex-1")["capabilities"] == ["code", "docs"]
    _, out, _ = cli("ai", "list", "-o", "name")
    assert out.split() == ["claude-1", "codex-1"]
    _code, out, _ = cli("ai", "list")  # piped: tab-separated rows, no header
    assert out.splitlines()[0].split("\t")[:2] == ["claude-1", "claude-code"] and "0/2" in out
    assert "concurrency" in cli("ai", "get", "claude-1")[1]


def test_errors_have_exit_codes_and_json_on_stderr(project, cli, j):
    j("ai", "register", "a1", "--connector", "command")
    code, out, err = cli("ai", "register", "a1", "--connector", "command", "-o", "json")
    assert code == 4 and out == "" and json.loads(err)["error"]["code"] == "conflict"
    code, out, err = cli("ai", "register", "a2", "--connector", "openai", "--config", "api_key=sk-abc")
    assert code == 2 and "looks like a secret" in err and "--api-key-env" in err
    code, out, err = cli(
        "ai", "register", "a2", "--connector", "openai", "--api-key-env", "sk-proj-abcdefghijklmnopqrstuvwxyz0123"
    )
    assert code == 2 and "NAME of an environment variable" in err and "sk-proj" not in err
    code, _, err = cli("ai", "register", "a2", "--connector", "gemini")
    assert code == 2 and "known connectors" in err
    code, _, err = cli("ai", "register", "a2", "--connector", "command", "--config", "nokey")
    assert code == 2 and "key=value" in err
    code, _, err = cli("ai", "get", "nope", "-o", "json")
    assert code == 3 and json.loads(err)["error"]["code"] == "not_found"
    assert cli("ai", "register", "a3", "--connector", "command", "--max-concurrency", "0")[0] == 2
    assert j("audit", "log")[-1]["action"] == "ai_register"  # the refusals wrote nothing


def test_label_enable_pause_resume_and_dry_run(project, cli, j):
    j("ai", "register", "a1", "--connector", "command", "-l", "x")
    assert j("ai", "label", "a1", "fast", "gpu,big")["labels"] == ["big", "fast", "gpu", "x"]
    assert j("ai", "unlabel", "a1", "x", "big")["labels"] == ["fast", "gpu"]
    assert j("ai", "disable", "a1")["enabled"] is False
    assert j("ai", "enable", "a1")["enabled"] is True
    before = time.time()
    p = j("ai", "pause", "a1", "--for", "10m", "--reason", "quota")
    assert 590 < p["paused_until"] - before < 700 and p["pause_reason"] == "quota"
    p = j("ai", "pause", "a1", "--until", "2099-01-01T00:00:00+00:00")
    assert p["paused_until"] == 4070908800.0
    assert j("ai", "resume", "a1")["paused_until"] is None
    assert cli("ai", "pause", "a1", "--for", "soon")[0] == 2
    assert cli("ai", "pause", "a1")[0] == 2
    assert j("ai", "label", "a1", "zzz", "--dry-run")["labels"] == ["fast", "gpu", "zzz"]
    assert j("ai", "get", "a1")["labels"] == ["fast", "gpu"]
    actions = [e["action"] for e in j("audit", "log") if e["action"].startswith("ai_")]
    assert actions == [
        "ai_register",
        "ai_label",
        "ai_unlabel",
        "ai_disable",
        "ai_enable",
        "ai_pause",
        "ai_pause",
        "ai_resume",
    ]


def test_remove_needs_yes_and_refuses_while_tasks_are_held(project, cli, j):
    j("ai", "register", "a1", "--connector", "command")
    j("task", "create", "t")
    j("task", "claim", "--owner", "w", "--ai", "a1")
    code, _, err = cli("ai", "remove", "a1")
    assert code == 2 and "--yes" in err
    code, _, err = cli("ai", "remove", "a1", "--yes")
    assert code == 4 and "holds 1 running task" in err
    assert j("ai", "remove", "a1", "--force", "--yes")["id"] == "a1"
    assert j("ai", "list") == []


def test_status_checks_for_real_and_exits_1_when_one_fails(project, tmp_path, fake_provider, cli, j):
    agent = tmp_path / "fakeagent"
    agent.write_text('#!/bin/sh\necho "fakeagent 9.9.9"\n')
    agent.chmod(0o755)
    j("ai", "register", "cli-1", "--connector", "claude-code", "--binary", str(agent), "--max-concurrency", "2")
    j(
        "ai",
        "register",
        "local",
        "--connector",
        "ollama",
        "--model",
        "qwen2.5-coder:7b",
        "--base-url",
        fake_provider.url,
    )
    rows = j("ai", "status")
    assert [(r["id"], r["ok"]) for r in rows] == [("cli-1", True), ("local", True)]
    assert "9.9.9" in json.dumps(rows[0]["health"]) and rows[0]["running"] == 0 and rows[0]["max_concurrency"] == 2
    j(
        "ai",
        "register",
        "gone",
        "--connector",
        "ollama",
        "--model",
        "qwen2.5-coder:7b",
        "--base-url",
        fake_provider.url + "/nothing-here",
    )
    j("ai", "pause", "gone", "--for", "1h")
    code, out, _ = cli("ai", "status", "-o", "json")
    rows = json.loads(out)
    assert code == 1 and [r["ok"] for r in rows] == [True, False, True]
    assert rows[1]["state"].startswith("paused until") and rows[1]["paused_until"] > time.time()
    code, out, _ = cli("ai", "status", "local")
    assert code == 0 and out.startswith("ok   local")
    assert cli("ai", "status", "nope")[0] == 3


def test_route_exit_0_with_a_choice_3_without(project, cli, j):
    j("ai", "register", "a1", "--connector", "command", "-c", "code")
    j("ai", "register", "a2", "--connector", "command", "-c", "code", "-l", "fast")
    ok = j("task", "create", "fix", "-c", "code", "-l", "ai:fast")["id"]
    gpu = j("task", "create", "train", "-c", "gpu")["id"]
    route = j("route", str(ok))
    assert route["chosen"] == "a2" and [(c["ai"], c["eligible"]) for c in route["candidates"]] == [
        ("a2", True),
        ("a1", False),
    ]
    assert route["candidates"][1]["reasons"] == ["task wants ai:fast"]
    code, out, _err = cli("route", str(gpu))
    assert code == 3 and "no AI can take it" in out and "missing capability gpu" in out
    code, out, _ = cli("route", str(gpu), "-o", "json")
    assert code == 3 and json.loads(out)["chosen"] is None
    assert cli("route", "999")[0] == 3
    # `task ready` with AIs registered: the gpu task is not ready, and says why
    entries = {e["id"]: e for e in j("task", "ready")}
    assert entries[ok]["ready"] and not entries[gpu]["ready"]
    assert entries[gpu]["reasons"] == ["no AI can take it: a1: missing capability gpu; a2: missing capability gpu"]
    # nothing was claimed or decided by asking
    assert {t["status"] for t in j("task", "list")} == {"queued"}
    assert j("audit", "decisions") == []


def test_task_claim_for_a_registered_ai_uses_its_labels_and_limit(project, cli, j):
    j("ai", "register", "a1", "--connector", "command", "-l", "fast", "--max-concurrency", "1")
    t1 = j("task", "create", "for fast", "-l", "ai:fast")["id"]
    j("task", "create", "for other", "-l", "ai:other", "-p", "9")
    j("task", "create", "anyone")
    got = j("task", "claim", "--owner", "w", "--ai", "a1")
    assert got["task"]["id"] == t1 and got["task"]["ai"] == "a1"
    code, _, _err = cli("task", "claim", "--owner", "w", "--ai", "a1")
    assert code == 3  # at its limit of 1: nothing to claim


def test_real_process_exit_codes(project, proc_cli):
    r = proc_cli("ai", "register", "a1", "--connector", "command", "-o", "json", cwd=project)
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == "a1"
    tid = json.loads(proc_cli("task", "create", "x", "-c", "gpu", "-o", "json", cwd=project).stdout)["id"]
    r = proc_cli("route", str(tid), "-o", "json", cwd=project)
    assert r.returncode == 3 and json.loads(r.stdout)["candidates"][0]["reasons"] == ["missing capability gpu"]
    r = proc_cli("ai", "get", "zzz", "-o", "json", cwd=project)
    assert r.returncode == 3 and json.loads(r.stderr)["error"]["code"] == "not_found"


@pytest.mark.parametrize("args", [["ai", "--help"], ["route", "--help"], ["ai", "register", "--help"]])
def test_help(project, args, cli):
    assert cli(*args)[0] == 0
