"""`aictl skill …`: list, show, add (path and git), enable/disable, remove, validate; validation at init,
ai register and daemon start; `init --with-examples`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def skill_dir(root: Path, name: str, front: str = "", body: str = "Do it well.") -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "SKILL.md").write_text(f"---\nname: {name}\ndescription: about {name}\n{front}---\n{body}\n")
    return d


def test_add_list_show_and_per_ai_scope(project, tmp_path, j, cli):
    src = tmp_path / "src"
    skill_dir(src, "style", "version: 1.2.0\n")
    d = skill_dir(src, "notes", "version: 0.1.0\n")
    (d / "scripts").mkdir()
    (d / "scripts" / "check.sh").write_text("echo ok\n")
    assert [s["name"] for s in j("skill", "add", str(src / "style"))] == ["style"]
    assert (project / ".ai/skills/style/SKILL.md").is_file()
    added = j("skill", "add", str(src / "notes"), "--ai", "scribe")
    assert added[0]["scope"] == "ai" and (project / ".ai/skills/ai/scribe/notes/scripts/check.sh").is_file()
    rows = j("skill", "list")
    assert [(r["name"], r["scope"], r["ai"]) for r in rows] == [("style", "shared", None), ("notes", "ai", "scribe")]
    assert [r["name"] for r in j("skill", "list", "--ai", "scribe")] == ["notes", "style"]
    assert [r["name"] for r in j("skill", "list", "--ai", "coder")] == ["style"]
    shown = j("skill", "show", "notes", "--ai", "scribe")
    assert shown["files"] == ["scripts/check.sh"] and shown["digest"].startswith("sha256:") and shown["body"]
    code, _, err = cli("skill", "show", "notes")
    assert code == 3 and "no skill 'notes'" in err
    code, _, err = cli("skill", "add", str(src / "style"))
    assert code == 4 and "already installed" in err
    assert j("skill", "add", str(src / "style"), "--ai", "scribe", "--dry-run")[0]["name"] == "style"
    assert not (project / ".ai/skills/ai/scribe/style").exists()


def test_add_from_a_git_repository(project, tmp_path, j):
    repo = tmp_path / "skills-repo"
    skill_dir(repo, "alpha", "version: 1.0.0\n")
    (repo / "beta.yaml").write_text("name: beta\ndescription: b\nversion: 2.0.0\nrequires: ['alpha>=1,<2']\nbody: B\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "skills"], check=True)
    added = j("skill", "add", f"file://{repo}")
    assert sorted(s["name"] + "@" + s["version"] for s in added) == ["alpha@1.0.0", "beta@2.0.0"]
    assert (project / ".ai/skills/beta.yaml").is_file() and not (project / ".ai/skills/alpha/.git").exists()


def test_a_bad_skill_is_refused_whole_and_names_file_and_line(project, tmp_path, cli, j):
    src = tmp_path / "src"
    skill_dir(src, "good")
    skill_dir(src, "needy", "requires: ['good>=2']\n")
    code, out, err = cli("skill", "add", str(src), "-o", "json")
    assert code == 2 and out == ""
    assert (
        "needy/SKILL.md:4: version conflict: needy requires good>=2, but good is 0.0.0"
        in json.loads(err)["error"]["message"]
    )
    assert j("skill", "list") == []  # all or none
    skill_dir(src, "typo", "lables: [x]\n")
    code, _, err = cli("skill", "validate", str(src / "typo"))
    assert code == 2 and "typo/SKILL.md:4: unknown key 'lables'" in err
    assert [s["name"] for s in j("skill", "validate", str(src / "good"))] == ["good"]


def test_enable_disable_remove_respect_requirements(project, tmp_path, j, cli):
    src = tmp_path / "src"
    skill_dir(src, "base", "version: 1.0.0\n")
    skill_dir(src, "top", "requires: [base]\n")
    j("skill", "add", str(src))
    code, _, err = cli("skill", "disable", "base")
    assert code == 2 and "cannot disable base" in err and "top requires base, which is disabled" in err
    code, _, err = cli("skill", "remove", "base")
    assert code == 2 and "not installed" in err and (project / ".ai/skills/base").is_dir()
    j("skill", "disable", "top")
    j("skill", "disable", "base", "--dry-run")
    assert "base" not in (project / ".ai/skills/state.yaml").read_text()
    j("skill", "disable", "base")
    assert [(r["name"], r["enabled"]) for r in j("skill", "list")] == [("base", False), ("top", False)]
    j("skill", "enable", "base", "--ai", "a1")
    assert [(r["name"], r["enabled"]) for r in j("skill", "list", "--ai", "a1")] == [("base", True), ("top", False)]
    j("skill", "remove", "top")
    j("skill", "remove", "base")
    assert j("skill", "list") == [] and "base" not in (project / ".ai/skills/state.yaml").read_text()


def test_list_for_a_task_shows_what_each_ai_gets(project, tmp_path, j):
    skills = project / ".ai" / "skills"
    skill_dir(skills, "shared-one")
    skill_dir(skills, "db", "labels: [db]\n")
    skill_dir(skills / "ai" / "scribe", "prose")
    j("ai", "register", "scribe", "--connector", "anthropic")
    j("ai", "register", "coder", "--connector", "claude-code")
    task = j("task", "create", "fix the schema", "--label", "db")
    rows = j("skill", "list", "--task", str(task["id"]))
    got = sorted((r["for_ai"], r["name"]) for r in rows)
    assert got == [
        ("coder", "db"),
        ("coder", "shared-one"),
        ("scribe", "db"),
        ("scribe", "prose"),
        ("scribe", "shared-one"),
    ]
    other = j("task", "create", "write docs")
    assert sorted(r["name"] for r in j("skill", "list", "--task", str(other["id"]), "--ai", "coder")) == ["shared-one"]


def test_a_policy_rule_can_deny_a_skill_to_an_ai(project, j):
    skill_dir(project / ".ai" / "skills", "secret-sauce")
    (project / ".ai" / "policy.yaml").write_text(
        "version: 1\ndefault: allow\nrules:\n  - id: no-sauce-for-cheap\n    effect: deny\n"
        "    match: {actions: [use_skill], ai: [cheap]}\n    when: 'context.skill == \"secret-sauce\"'\n"
    )
    j("ai", "register", "cheap", "--connector", "ollama")
    j("ai", "register", "good", "--connector", "anthropic")
    task = j("task", "create", "t")
    rows = {r["for_ai"]: r for r in j("skill", "list", "--task", str(task["id"]))}
    assert rows["good"]["delivered"] is True
    assert rows["cheap"]["delivered"] is False and "no-sauce-for-cheap" in rows["cheap"]["reason"]


def test_validation_at_init_ai_register_and_daemon_start(project, cli):
    skill_dir(project / ".ai" / "skills", "broken", "version: one\n")
    for args in (["init"], ["ai", "register", "a1", "--connector", "command"], ["daemon", "start"]):
        code, _, err = cli(*args)
        assert code == 2 and "broken/SKILL.md:4: 'one' is not a semantic version" in err, args


def test_init_with_examples_copies_them(tmp_path, monkeypatch, j):
    root = tmp_path / "fresh"
    root.mkdir()
    monkeypatch.chdir(root)
    created = j("init", "--with-examples")["created"]
    examples = sorted(p.name for p in (REPO / "skills").iterdir() if (p / "SKILL.md").is_file())
    assert [c for c in created if c.startswith(".ai/skills/") and c != ".ai/skills/"] == [
        f".ai/skills/{n}/" for n in examples
    ]
    assert sorted(r["name"] for r in j("skill", "list")) == examples
    assert j("init", "--with-examples")["created"] == []


def test_examples_ship_as_package_data():
    """An installed wheel has no top-level skills/: the examples reach it through aictl/examples/ and
    pyproject's package-data globs, which must cover every example file (a new file type would be left out)."""
    import tomllib

    from aictl.skills.manage import examples_dir

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["aictl.examples"]
    base = REPO / "aictl" / "examples"
    shipped = {p.resolve() for g in globs for p in base.glob(g) if p.is_file()}
    for kind in ("skills", "policies", "workflows"):
        assert (base / kind).resolve() == (REPO / kind).resolve()
        files = {p.resolve() for p in (REPO / kind).rglob("*") if p.is_file()}
        assert files and files <= shipped, sorted(str(f) for f in files - shipped)
    assert examples_dir().resolve() == (REPO / "skills").resolve()
