"""`aictl task execute` with registered AIs: routing, the agent's context, usage, activity, rate limits, resume.

The agent is a scripted test connector registered with `register()`, like a third-party
connector would be: a test double for the AI (real agents are the connectors' own tests),
while the store, the CLI, the policy, git worktrees and the executor are real.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

import pytest

from aictl.agents.connectors import ConnectorResult, register


class Scripted:
    name = "scripted"
    script: ClassVar[list] = []  # callables(ctx) -> ConnectorResult, one per run
    runs: ClassVar[list] = []  # the RunContext of each run

    def run(self, ctx):
        Scripted.runs.append(ctx)
        return Scripted.script.pop(0)(ctx)


@pytest.fixture
def scripted(git_project):
    from aictl.agents.connectors import _FACTORIES

    Scripted.script, Scripted.runs = [], []
    register("scripted", Scripted)
    yield Scripted
    _FACTORIES.pop("scripted", None)


def execute(cli, *args):
    code, out, err = cli("task", "execute", *args, "-o", "json")
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    return code, lines, err


def report_of(lines):
    return next(x for x in lines if x.get("type") == "report")


def writes(path: str, text: str = "new\n", **result):
    """A scripted run: write a file, say what it did through on_event, succeed."""

    def act(ctx):
        (Path(ctx.workdir) / path).parent.mkdir(parents=True, exist_ok=True)
        (Path(ctx.workdir) / path).write_text(text)
        if ctx.on_event:
            ctx.on_event({"type": "init", "session_id": "sess-1", "model": "m1", "tools": ctx.allowed_tools})
            ctx.on_event({"type": "tool_call", "id": "1", "name": "write", "input": {"file_path": path}})
            ctx.on_event({"type": "message", "role": "assistant", "text": f"wrote {path}"})
        base = {
            "ok": True,
            "summary": f"wrote {path}",
            "session_id": "sess-1",
            "model": "m1",
            "usage": {"input_tokens": 1200, "output_tokens": 300, "cache_read_tokens": 50, "turns": 3},
            "cost_usd": 0.0123,
            "transcript": f"write {path}",
        }
        return ConnectorResult(**{**base, **result})

    return act


def rate_limited(retry_in: float = 120):
    def act(ctx):
        return ConnectorResult(
            ok=False,
            error="429 Too Many Requests",
            error_kind="rate_limit",
            transient=True,
            retry_at=time.time() + retry_in if retry_in else None,
            session_id="sess-rl",
        )

    return act


def register_ai(j, ai_id, *args):
    j("ai", "register", ai_id, "--connector", "scripted", *args)


def create(j, *args) -> int:
    return j("task", "create", *args)["id"]


def evidence(cli, j, tid, kind):
    refs = [e for e in j("task", "evidence", str(tid)) if e["kind"] == kind]
    return [json.loads(cli("audit", "evidence", e["digest"])[1]) for e in refs]


def test_routed_run_gets_its_context_and_leaves_usage_and_activity(scripted, git_project, cli, j):
    register_ai(j, "a1", "-c", "code", "--config", "max_turns=7")
    tid = create(
        j,
        "Fix login",
        "-d",
        "Users cannot log in.",
        "--lock",
        "src/**",
        "-c",
        "code",
        "--verify",
        "test -f src/login.py",
        "-l",
        "auth",
    )
    skill_dir = git_project / ".ai" / "skills" / "auth"
    skill_dir.mkdir(parents=True)
    (skill_dir / "SKILL.md").write_text(
        "---\nname: auth\ndescription: how auth works\nlabels: [auth]\n---\nUse bcrypt.\n"
    )
    scripted.script = [writes("src/login.py")]
    code, lines, err = execute(cli, str(tid))
    rep = report_of(lines)
    assert code == 0 and rep["outcome"] == "done" and rep["ai"] == "a1" and rep["connector"] == "scripted", err
    assert rep["changed_paths"] == ["src/login.py"]
    (ctx,) = scripted.runs
    assert ctx.ai.id == "a1" and ctx.prompt == "Fix login\n\nUsers cannot log in."
    assert "src/**" in ctx.system and "test -f src/login.py" in ctx.system and "Use bcrypt." in ctx.system
    assert ctx.allowed_tools == ["read", "write", "list", "run"]  # aictl init's policy allows use_tool
    assert ctx.max_turns == 7 and ctx.resume_session is None
    assert ctx.state_dir == git_project / ".ai" / "agents" / "a1" / f"task-{tid}" and ctx.state_dir.is_dir()
    agent = [x["event"]["type"] for x in lines if x.get("type") == "agent"]
    assert agent == ["init", "tool_call", "message"]
    (usage,) = evidence(cli, j, tid, "usage")
    assert usage["tokens"] == {"input": 1200, "output": 300, "cache_read": 50, "total": 1550}
    assert usage["turns"] == 3 and usage["cost_usd"] == 0.0123 and usage["model"] == "m1" and usage["ai"] == "a1"
    (run_json,) = evidence(cli, j, tid, "run")
    assert run_json["session_id"] == "sess-1" and run_json["ai"] == "a1"
    task = j("task", "get", str(tid))
    assert task["ai"] == "a1" and task["activity"] == "wrote src/login.py"
    claim = next(e for e in j("audit", "log", "--task", str(tid)) if e["action"] == "claim")
    assert claim["data"]["ai"] == "a1"


def test_rate_limited_routed_ai_is_paused_and_the_next_ai_takes_the_task_at_once(scripted, cli, j):
    register_ai(j, "a1")
    register_ai(j, "a2")
    tid = create(j, "t", "--lock", "src/**", "--max-attempts", "1")
    scripted.script = [rate_limited(), writes("src/t.py")]
    code, lines, err = execute(cli, str(tid))
    rep = report_of(lines)
    assert code == 0 and rep["outcome"] == "done" and rep["ai"] == "a2", err
    assert [c.ai.id for c in scripted.runs] == ["a1", "a2"]
    a1 = j("ai", "get", "a1")
    assert a1["paused_until"] > time.time() + 60 and "rate_limit: 429" in a1["pause_reason"]
    assert [x["ai"] for x in lines if x.get("type") == "ai_paused"] == ["a1"]
    actions = [e["action"] for e in j("audit", "log", "--task", str(tid)) if e["action"] != "decision"]
    assert actions[:3] == ["create", "claim", "start"] and "release" in actions and actions[-1] == "complete"
    assert j("task", "get", str(tid))["attempts"] == 0  # a release burns no attempt (max_attempts was 1)
    code, out, err = cli("route", str(tid), "-o", "json")
    route = json.loads(out)
    assert any(r.startswith("rate-limited until") for r in route["candidates"][-1]["reasons"])


def test_rate_limit_of_a_pinned_ai_fails_the_attempt_as_transient(scripted, cli, j):
    register_ai(j, "a1")
    register_ai(j, "a2")
    tid = create(j, "t", "--lock", "src/**")
    scripted.script = [rate_limited(retry_in=0)]
    code, lines, _ = execute(cli, str(tid), "--ai", "a1")
    rep = report_of(lines)
    assert code == 1 and rep["outcome"] == "retrying" and rep["task"]["status"] == "queued"
    assert rep["task"]["attempts"] == 1 and "a1 is rate-limited until" in rep["reason"]
    a1 = j("ai", "get", "a1")
    assert 50 < a1["paused_until"] - time.time() <= 60  # no reset time given: the default pause
    assert len(scripted.runs) == 1


def test_executor_releases_and_reports_released(scripted, git_project, cli, j):
    from aictl.config import load_settings
    from aictl.execution.executor import ExecuteOptions, Executor
    from aictl.policy.gate import load_gate
    from aictl.store import open_store

    register_ai(j, "a1")
    tid = create(j, "t", "--lock", "src/**")
    scripted.script = [rate_limited()]
    settings = load_settings(git_project)
    with open_store(settings.resolved_database_url) as store:
        report = Executor(store, settings, policy=load_gate(git_project)).execute(tid, ExecuteOptions(owner="d1"))
    assert report.outcome == "released" and report.task.status == "queued" and report.workspace is None
    assert "released for another AI" in report.reason
    code, _, err = cli("task", "execute", str(tid))
    assert code == 3 and f"no AI can take task {tid}: a1: rate-limited until" in err


def test_no_eligible_ai_names_every_reason_and_claims_nothing(scripted, cli, j):
    register_ai(j, "a1", "-c", "code")
    register_ai(j, "a2", "-c", "gpu")
    j("ai", "pause", "a2", "--for", "1h", "--reason", "usage limit")
    tid = create(j, "train", "-c", "gpu")
    code, _out, err = cli("task", "execute", str(tid))
    assert code == 3
    assert f"no AI can take task {tid}: a1: missing capability gpu; a2: rate-limited until" in err
    assert "(usage limit)" in err and f"aictl route {tid}" in err
    assert j("task", "get", str(tid))["status"] == "queued" and not scripted.runs


def test_pinned_ai_that_cannot_take_the_task_is_refused_with_reasons(scripted, cli, j):
    register_ai(j, "a1", "-c", "docs")
    tid = create(j, "x", "-c", "code", "-l", "ai:other")
    code, _out, err = cli("task", "execute", str(tid), "--ai", "a1")
    assert code == 4 and "AI a1 cannot take task" in err and "missing capability code" in err
    assert "task wants ai:other" in err and j("task", "get", str(tid))["status"] == "queued"


def test_command_tasks_still_run_their_command_without_an_ai(scripted, cli, j):
    register_ai(j, "a1")
    tid = create(j, "fmt", "--lock", "src/**", "--command", "echo x > src/x.py")
    code, lines, _ = execute(cli, str(tid))
    rep = report_of(lines)
    assert code == 0 and rep["connector"] == "command" and rep["ai"] is None and not scripted.runs


def test_resume_continues_the_last_session_on_the_same_ai(scripted, cli, j):
    register_ai(j, "a1")
    tid = create(j, "t", "--lock", "src/**", "--max-attempts", "1")
    code, _, err = cli("task", "execute", str(tid), "--resume")
    assert code == 2 and "no earlier agent session" in err
    scripted.script = [writes("src/t.py", ok=False, error="gave up", session_id="sess-42")]
    assert execute(cli, str(tid))[0] == 1
    j("task", "retry", str(tid))
    register_ai(j, "a0")  # idle and never used: the router would pick it, but the session lives in a1
    scripted.script = [writes("src/t.py")]
    code, lines, err = execute(cli, str(tid), "--resume", "-m", "use the other API")
    assert code == 0 and report_of(lines)["ai"] == "a1", err
    ctx = scripted.runs[-1]
    assert ctx.resume_session == "sess-42" and ctx.prompt == "use the other API"
    assert ctx.state_dir == scripted.runs[0].state_dir  # the agent's state persists across attempts


def test_activity_writes_are_throttled_and_fenced(git_project, cli, j):
    from aictl.config import load_settings
    from aictl.execution.activity import ActivityWriter
    from aictl.store import open_store
    from aictl.tasks.service import TaskService

    tid = create(j, "t")
    settings = load_settings(git_project)
    open_ = lambda: open_store(settings.resolved_database_url)  # noqa: E731
    with open_() as store:
        claim = TaskService(store, settings).claim("w", task_id=tid)
        seen = []
        # An hour between writes: the first line is written, then only the last one, when the run ends.
        writer = ActivityWriter(open_, tid, "w", claim.lease.lease_epoch, seen.append, interval=3600)
        for i in range(50):
            writer.on_event({"type": "tool_call", "name": "run", "input": {"command": f"step {i}"}})
        writer.finish()
        assert len(seen) == 50 and seen[0]["type"] == "agent" and seen[0]["task_id"] == tid
        assert 1 <= writer.writes <= 2
        assert j("task", "get", str(tid))["activity"] == "run: step 49"
        stale = ActivityWriter(open_, tid, "w", claim.lease.lease_epoch + 1, seen.append)
        stale.on_event({"type": "message", "text": "late worker"})
        stale.finish()
        assert j("task", "get", str(tid))["activity"] == "run: step 49"
