"""The skill registry: both forms, scopes and precedence, requirements and versions, errors with file:line."""

from __future__ import annotations

import os

import pytest

from aictl.domain.models import Task
from aictl.skills import SkillError, load_registry, load_skill_file, resolve, validate
from aictl.skills.registry import load_state, save_state
from aictl.skills.version import parse_requirement


def task(**kw) -> Task:
    return Task(**{"id": 1, "title": "t", "status": "queued", "created_at": 0, "updated_at": 0, **kw})


def put(root, rel, front, body="Body."):
    d = root / ".ai" / "skills" / rel
    d.mkdir(parents=True)
    (d / "SKILL.md").write_text(f"---\n{front}\n---\n{body}\n")
    return d


def names(resolved):
    return [f"{r.skill.name}@{r.skill.version}:{r.skill.scope}" for r in resolved]


def test_version_ranges():
    req = parse_requirement("python-tests>=1.2,<2")
    assert req.name == "python-tests" and req.allows("1.2.0") and req.allows("1.9.3")
    assert not req.allows("1.1.9") and not req.allows("2.0.0")
    assert parse_requirement("x~=1.2").allows("1.5.0") and not parse_requirement("x~=1.2").allows("2.0.0")
    assert parse_requirement("x~=1.2.3").allows("1.2.9") and not parse_requirement("x~=1.2.3").allows("1.3.0")
    assert parse_requirement("x==1.2").allows("1.2.7") and not parse_requirement("x!=1.2").allows("1.2.7")
    assert parse_requirement("x^1.4").allows("1.9.0") and not parse_requirement("x^1.4").allows("2.0.0")
    assert parse_requirement("x").allows("0.0.1")
    with pytest.raises(ValueError, match="not a version clause"):
        parse_requirement("x=>1")


def test_yaml_form_is_the_same_model_with_its_files(tmp_path):
    (tmp_path / ".ai" / "skills").mkdir(parents=True)
    (tmp_path / ".ai" / "skills" / "lint.yaml").write_text(
        "name: lint\ndescription: run the linter\nversion: 2.1.0\nlabels: [python]\n"
        "body: |\n  Run ruff.\nfiles:\n  scripts/lint.sh: ruff check .\n"
    )
    reg = load_registry(tmp_path)
    s = reg.find("lint")
    assert (s.version, s.body, s.files(), s.read_file("scripts/lint.sh")) == (
        "2.1.0",
        "Run ruff.",
        ["scripts/lint.sh"],
        "ruff check .",
    )
    assert names(resolve(reg, task(labels=["python"]), None)) == ["lint@2.1.0:shared"]
    assert resolve(reg, task(labels=["go"]), None) == []
    assert s.digest.startswith("sha256:")


def test_per_ai_over_shared_over_user_and_per_ai_skills_reach_only_their_ai(tmp_path, monkeypatch):
    user = tmp_path / "user" / "skills"
    monkeypatch.setenv("AICTL_CONFIG_DIR", str(tmp_path / "user"))
    for name, version in (("style", "1.0.0"), ("mine", "1.0.0")):
        (user / name).mkdir(parents=True)
        (user / name / "SKILL.md").write_text(f"---\nname: {name}\ndescription: d\nversion: {version}\n---\nuser\n")
    put(tmp_path, "style", "name: style\ndescription: d\nversion: 2.0.0")
    put(tmp_path, "ai/scribe/style", "name: style\ndescription: d\nversion: 3.0.0")
    put(tmp_path, "ai/scribe/notes", "name: notes\ndescription: only scribe")
    reg = load_registry(tmp_path)
    assert names(resolve(reg, task(), "scribe")) == ["mine@1.0.0:user", "notes@0.0.0:ai", "style@3.0.0:ai"]
    assert names(resolve(reg, task(), "coder")) == ["mine@1.0.0:user", "style@2.0.0:shared"]
    assert names(resolve(reg, task(), None)) == ["mine@1.0.0:user", "style@2.0.0:shared"]


def test_a_folder_without_skill_md_under_skills_is_an_error_not_a_skill_for_everyone(tmp_path):
    put(tmp_path, "scribe/notes", "name: notes\ndescription: d")
    with pytest.raises(SkillError, match=r"skills/scribe: a skill folder needs a SKILL.md") as e:
        load_registry(tmp_path)
    assert "ai/<ai-id>/scribe" in e.value.hint


def test_filters_labels_capabilities_paths_connectors(tmp_path):
    put(tmp_path, "db", "name: db\ndescription: d\nlabels: [db]")
    put(tmp_path, "gpu", "name: gpu\ndescription: d\ncapabilities: [cuda]")
    put(tmp_path, "web", "name: web\ndescription: d\npaths: ['web/**']")
    put(tmp_path, "cc", "name: cc\ndescription: d\nconnectors: [claude-code]")
    reg = load_registry(tmp_path)
    got = lambda t, c=None: [r.skill.name for r in resolve(reg, t, "a", c)]  # noqa: E731
    assert got(task(lock_paths=["src/**"])) == []
    assert got(task(labels=["db"], lock_paths=["web/app/**"])) == ["db", "web"]
    assert got(task(required_capabilities=["cuda"], lock_paths=["src/x.py"]), "claude-code") == ["cc", "gpu"]
    assert got(task()) == ["web"]  # no lock: the task may touch web/


def test_requirements_are_pulled_in_and_checked(tmp_path):
    put(tmp_path, "python-tests", "name: python-tests\ndescription: d\nversion: 1.4.0")
    put(tmp_path, "small-commits", "name: small-commits\ndescription: d\nversion: 1.0.0\nlabels: [never]")
    put(
        tmp_path,
        "api",
        "name: api\ndescription: d\nversion: 1.0.0\nlabels: [api]\nrequires: ['python-tests>=1.2,<2', small-commits]",
    )
    reg = load_registry(tmp_path)
    got = resolve(reg, task(labels=["api"]), None)
    assert [(r.skill.name, r.reason) for r in got] == [
        ("api", "labels"),
        ("python-tests", "all tasks"),
        ("small-commits", "required by api"),
    ]
    assert validate(reg)


def test_version_conflict_names_file_and_line(tmp_path):
    put(tmp_path, "python-tests", "name: python-tests\ndescription: d\nversion: 2.0.0")
    d = put(tmp_path, "api", "name: api\ndescription: d\nversion: 1.0.0\nrequires: ['python-tests>=1.2,<2']")
    with pytest.raises(
        SkillError,
        match=rf"{d}/SKILL.md:5: version conflict: api requires python-tests>=1.2,<2, "
        r"but python-tests is 2.0.0",
    ):
        validate(load_registry(tmp_path))


def test_missing_cyclic_and_disabled_requirements(tmp_path):
    put(tmp_path, "a", "name: a\ndescription: d\nrequires: [b]")
    with pytest.raises(SkillError, match=r"a/SKILL.md:4: a requires b, which is not installed"):
        validate(load_registry(tmp_path))
    put(tmp_path, "b", "name: b\ndescription: d\nrequires: [c]")
    put(tmp_path, "c", "name: c\ndescription: d\nrequires: [a]")
    with pytest.raises(SkillError, match=r"cyclic requires: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        validate(load_registry(tmp_path))
    (tmp_path / ".ai/skills/c/SKILL.md").write_text("---\nname: c\ndescription: d\n---\n")
    skills_dir = tmp_path / ".ai" / "skills"
    state = load_state(skills_dir)
    state.set("c", False, None)
    save_state(skills_dir, state)
    with pytest.raises(SkillError, match="b requires c, which is disabled"):
        validate(load_registry(tmp_path))
    state.set("c", True, "x")  # back on for AI x only
    save_state(skills_dir, state)
    reg = load_registry(tmp_path)
    assert [r.skill.name for r in resolve(reg, task(), "x")] == ["a", "b", "c"]
    with pytest.raises(SkillError, match="disabled"):
        resolve(reg, task(), "y")


@pytest.mark.parametrize(
    ("front", "message"),
    [
        ("name: a\ndescription: d\nlables: [x]", r"a/SKILL.md:4: unknown key 'lables'"),
        ("name: a\ndescription: d\nversion: 1.2", r"a/SKILL.md:4: '1.2' is not a semantic version"),
        ("name: a\ndescription: d\nrequires: ['b>=x']", r"a/SKILL.md:4: 'b>=x': 'x' is not a version"),
        ("name: b\ndescription: d", r"a/SKILL.md:2: name 'b' must match its folder 'a'"),
        ("name: a\n\ndescription: d\ntests: [{prompt: p, expect: {contain: x}}]", r"a/SKILL.md:5: test 1: unknown key"),
        ("name: a\ndescription: [d", r"a/SKILL.md:\d+:\d+: invalid YAML"),
    ],
)
def test_errors_name_file_and_line(tmp_path, front, message):
    put(tmp_path, "a", front)
    with pytest.raises(SkillError, match=message):
        load_registry(tmp_path)


def test_a_skill_folder_lists_its_files_and_digest_follows_them(tmp_path):
    d = put(tmp_path, "a", "name: a\ndescription: d")
    (d / "scripts").mkdir()
    (d / "scripts" / "run.sh").write_text("echo hi\n")
    first = load_skill_file(d)
    assert first.files() == [os.path.join("scripts", "run.sh")] and first.digest
    (d / "scripts" / "run.sh").write_text("echo bye\n")
    assert load_skill_file(d).digest != first.digest
