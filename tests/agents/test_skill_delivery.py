"""Skills reach each agent the way it reads them: the API connectors' index + load_skill round trip through the
real SDK and the fake provider, per-AI scoping with two AIs on one queue, evidence, and a policy denial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.agents.sdk_variants import ANTHROPIC, CHAT, KEYS
from tests.fakeprovider import reply, tool


# What the model was sent (the two protocols these tests use).
def system_of(v, body: dict) -> str:
    return body["system"] if v.protocol == "anthropic" else body["messages"][0]["content"]


def tool_results_of(v, body: dict) -> list[str]:
    if v.protocol == "anthropic":
        return [
            b["content"]
            for m in body["messages"]
            if m["role"] == "user" and isinstance(m["content"], list)
            for b in m["content"]
            if b["type"] == "tool_result"
        ]
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)


def put_skill(root, rel, name, body, front=""):
    d = root / ".ai" / "skills" / rel
    d.mkdir(parents=True)
    (d / "SKILL.md").write_text(f"---\nname: {name}\ndescription: about {name}\nversion: 1.2.0\n{front}---\n{body}\n")
    return d


def register(capsys, fp, ai_id, v):
    from tests.agents.cli_fixtures import cli_json

    args = [
        "ai",
        "register",
        ai_id,
        "--connector",
        v.connector,
        "--model",
        v.model,
        "--base-url",
        fp.url,
        "--api-key-env",
        v.key_env,
    ]
    for key, value in v.config.items():
        args += ["--config", f"{key}={value}"]
    cli_json(capsys, *args)


@pytest.mark.parametrize("v", [ANTHROPIC, CHAT], ids=lambda v: v.protocol)
def test_api_connector_gets_an_index_and_loads_a_skill_on_demand(fake_provider, git_project, capsys, v):
    from tests.agents.cli_fixtures import cli_json, evidence_of, execute

    d = put_skill(git_project, "greeting", "greeting", "Always greet in French: write 'bonjour'.")
    (d / "scripts").mkdir()
    (d / "scripts" / "check.sh").write_text("grep -q bonjour hello.txt\n")
    register(capsys, fake_provider, "api-1", v)
    tid = cli_json(capsys, "task", "create", "create hello.txt with a greeting", "--lock", "hello.txt")["id"]
    fake_provider.script(
        reply("", [tool("load_skill", {"name": "greeting"})]),
        reply("", [tool("load_skill", {"name": "greeting", "file": "scripts/check.sh"})]),
        reply("", [tool("write_file", {"path": "hello.txt", "content": "bonjour\n"})]),
        reply("Done."),
    )
    code, rep, err = execute(capsys, str(tid), "--ai", "api-1")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    bodies = [r.body for r in fake_provider.requests if r.protocol == v.protocol]
    first = bodies[0]
    assert "- greeting: about greeting" in system_of(v, first) and "bonjour" not in system_of(v, first)
    assert "load_skill" in next(r.tools for r in fake_provider.requests if r.protocol == v.protocol)
    results = tool_results_of(v, bodies[-1])
    assert "Always greet in French" in results[0] and "- scripts/check.sh" in results[0]
    assert results[1] == "grep -q bonjour hello.txt\n"
    assert rep["changed_paths"] == ["hello.txt"]
    found = evidence_of(capsys, tid)
    skills = json.loads(found["skills"])
    assert [(s["name"], s["version"], s["scope"]) for s in skills["skills"]] == [("greeting", "1.2.0", "shared")]
    assert skills["skills"][0]["digest"].startswith("sha256:")
    assert json.loads(found["run"])["skills"] == ["greeting@1.2.0"]


def test_shared_and_per_ai_skills_with_two_ais_on_one_queue(fake_provider, git_project, capsys):
    from tests.agents.cli_fixtures import cli_json, execute

    put_skill(git_project, "house-style", "house-style", "Shared rule.")
    put_skill(git_project, "ai/writer/prose", "prose", "Only the writer gets this.")
    put_skill(git_project, "ai/coder/house-style", "house-style", "The coder's own house style.")
    register(capsys, fake_provider, "writer", ANTHROPIC)
    register(capsys, fake_provider, "coder", ANTHROPIC)
    t1 = cli_json(capsys, "task", "create", "one", "--lock", "a.txt")["id"]
    t2 = cli_json(capsys, "task", "create", "two", "--lock", "b.txt")["id"]
    fake_provider.script(
        reply("", [tool("load_skill", {"name": "house-style"})]),
        reply("ok"),
        reply("", [tool("load_skill", {"name": "house-style"})]),
        reply("ok"),
    )
    for tid, ai in ((t1, "writer"), (t2, "coder")):
        code, rep, err = execute(capsys, str(tid), "--ai", ai)
        assert code == 0, (rep.get("reason"), err)
    bodies = [r.body for r in fake_provider.requests if r.protocol == "anthropic"]
    writer_system, coder_system = bodies[0]["system"], bodies[2]["system"]
    assert "- prose:" in writer_system and "- house-style:" in writer_system
    assert "- prose:" not in coder_system and "- house-style:" in coder_system
    assert "Shared rule." in tool_results_of(ANTHROPIC, bodies[1])[0]
    assert "The coder's own house style." in tool_results_of(ANTHROPIC, bodies[3])[0]


def test_a_denied_skill_does_not_reach_the_ai_and_the_decision_is_recorded(fake_provider, git_project, capsys):
    from tests.agents.cli_fixtures import cli_json, evidence_of, execute

    put_skill(git_project, "secret", "secret", "Secret sauce.")
    put_skill(git_project, "open", "open", "Open rule.")
    policy = git_project / ".ai" / "policy.yaml"
    policy.write_text(
        policy.read_text() + "  - id: no-secret\n    effect: deny\n"
        "    match: {actions: [use_skill]}\n    when: 'context.skill == \"secret\"'\n"
    )
    register(capsys, fake_provider, "api-1", ANTHROPIC)
    tid = cli_json(capsys, "task", "create", "t", "--lock", "x.txt")["id"]
    fake_provider.script(reply("ok"))
    code, rep, err = execute(capsys, str(tid), "--ai", "api-1")
    assert code == 0, (rep.get("reason"), err)
    system = fake_provider.requests[-1].body["system"]
    assert "- open:" in system and "secret" not in system
    assert [d["effect"] for d in rep["decisions"] if d["action"] == "use_skill"] == ["deny"]
    skills = json.loads(evidence_of(capsys, tid)["skills"])
    assert [s["name"] for s in skills["skills"]] == ["open"] and skills["denied"][0]["name"] == "secret"


def test_claude_code_sees_a_skill_in_its_worktree_and_the_diff_does_not_contain_it(
    claude_bin, fake_provider, git_project, capsys, monkeypatch
):
    from pathlib import Path

    from aictl.config import load_settings
    from tests.agents.cli_fixtures import cli_json, evidence_of, execute
    from tests.execution.conftest import git

    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "sk-ant-api03-fakeKEYforTESTS0123456789abcdefghijklmnop")
    put_skill(git_project, "greeting", "greeting", "Always greet in French: write 'bonjour'.")
    cli_json(
        capsys,
        "ai",
        "register",
        "claude-1",
        "--connector",
        "claude-code",
        "--model",
        "claude-sonnet-4-5",
        "--base-url",
        fake_provider.url,
        "--binary",
        claude_bin,
        "--api-key-env",
        "FAKE_ANTHROPIC_KEY",
        "--config",
        "max_retries=0",
    )
    tid = cli_json(capsys, "task", "create", "create hello.txt with a greeting", "--lock", "hello.txt")["id"]
    workspace = Path(load_settings(git_project).home) / "workspaces" / f"task-{tid}-e1"
    fake_provider.script(
        reply("", [tool("Read", {"file_path": str(workspace / ".claude" / "skills" / "greeting" / "SKILL.md")})]),
        reply("", [tool("Write", {"file_path": str(workspace / "hello.txt"), "content": "bonjour\n"})]),
        reply("Done."),
    )
    code, rep, err = execute(capsys, str(tid), "--ai", "claude-1")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    first = fake_provider.calls("anthropic")[0]
    offered = json.dumps({k: first.body.get(k) for k in ("system", "tools", "messages")})
    assert "greeting" in offered and "about greeting" in offered  # the CLI found the skill and offers it
    assert "Always greet in French" not in offered  # its body is loaded on demand, not up front
    second = json.dumps(fake_provider.calls("anthropic")[1].body["messages"])
    assert "Always greet in French" in second  # the file was there, in the worktree, during the run
    assert rep["changed_paths"] == ["hello.txt"]
    found = evidence_of(capsys, tid)
    assert ".claude" not in found["diff"] and "bonjour" in found["diff"]
    assert ".claude" not in git(git_project, "ls-tree", "-r", "--name-only", f"aictl/task-{tid}")
    assert json.loads(found["run"])["skills"] == ["greeting@1.2.0"]


def test_codex_lists_a_skill_from_its_home_and_the_diff_does_not_contain_it(
    codex_bin, fake_provider, git_project, capsys, monkeypatch
):
    from tests.agents.cli_fixtures import cli_json, evidence_of, execute
    from tests.execution.conftest import git

    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-proj-fakeKEYforTESTS0123456789abcdefghijklmnopqrstuv")
    put_skill(git_project, "greeting", "greeting", "Always greet in French: write 'bonjour'.")
    (git_project / "AGENTS.md").write_text("# Project notes\nKeep it short.\n")
    git(git_project, "add", "AGENTS.md")
    git(git_project, "commit", "-qm", "agents notes")
    cli_json(
        capsys,
        "ai",
        "register",
        "codex-1",
        "--connector",
        "codex",
        "--model",
        "gpt-5.5",
        "--base-url",
        fake_provider.url,
        "--binary",
        codex_bin,
        "--api-key-env",
        "FAKE_OPENAI_KEY",
        "--config",
        "max_retries=0",
    )
    tid = cli_json(capsys, "task", "create", "create hello.txt with a greeting", "--lock", "hello.txt")["id"]
    fake_provider.script(
        reply("", [tool("apply_patch", "*** Begin Patch\n*** Add File: hello.txt\n+bonjour\n*** End Patch\n")]),
        reply("Done."),
    )
    code, rep, err = execute(capsys, str(tid), "--ai", "codex-1")
    assert code == 0 and rep["outcome"] == "done", (rep.get("reason"), err)
    sent = json.dumps(fake_provider.calls()[0].body["input"])
    listed = sent[sent.index("Available skills") :]
    assert "- greeting: about greeting (file: " in listed  # Codex's own skill list: name, description, where to read it
    assert "Always greet in French" not in sent  # progressive disclosure: the body is read only on demand
    assert "Keep it short." in sent  # the project's own AGENTS.md is untouched and still read
    assert rep["changed_paths"] == ["hello.txt"]
    found = evidence_of(capsys, tid)
    assert "AGENTS.md" not in found["diff"] and "greeting" not in found["diff"]
    home = git_project / ".ai" / "agents" / "codex-1" / f"task-{tid}" / "codex-home" / "skills"
    assert "Always greet in French" in (home / "greeting" / "SKILL.md").read_text()

    from aictl.skills.delivery import sync_home

    (home / "mine").mkdir()  # a user's own skill in that home is never touched by a later sync
    assert sync_home(home, []) == [] and not (home / "greeting").exists() and (home / "mine").is_dir()


EXAMPLES = sorted(p.parent.name for p in (Path(__file__).resolve().parents[2] / "skills").glob("*/SKILL.md"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_skill_passes_its_own_tests_through_skill_test(fake_provider, git_project, capsys, name):
    from aictl.skills import load_skill_file
    from tests.agents.cli_fixtures import cli, cli_json

    cli_json(capsys, "init", "--with-examples")
    skill = load_skill_file(git_project / ".ai" / "skills" / name)
    assert skill.tests, f"example {name} has no tests: cases"
    register(capsys, fake_provider, "api-1", ANTHROPIC)
    for case in skill.tests:  # the scripted model reads the skill, then writes what the case expects
        fake_provider.script(
            reply("", [tool("load_skill", {"name": name})]),
            reply("", [tool("write_file", {"path": "out.txt", "content": "\n".join(case["expect"]["contains"])})]),
            reply("Done: wrote out.txt."),
        )
    code, out, err = cli(capsys, "skill", "test", name, "--ai", "api-1", "-o", "json")
    results = json.loads(out)
    assert code == 0, ([r["failures"] for r in results], err)
    assert [r["ok"] for r in results] == [True] * len(skill.tests), results
    assert "Done: wrote out.txt." in results[0]["summary"]
    loaded = tool_results_of(ANTHROPIC, fake_provider.calls("anthropic")[1].body)
    assert skill.body.splitlines()[0] in loaded[0]
    assert cli_json(capsys, "task", "list") == []  # the cases ran in a throwaway project

    fake_provider.script(reply("", [tool("load_skill", {"name": name})]), reply("I did nothing."))
    code, out, _ = cli(capsys, "skill", "test", name, "--ai", "api-1", "-o", "json")
    (failed,) = json.loads(out)[:1]
    assert code == 1 and not failed["ok"] and failed["failures"][0].startswith("missing ")
