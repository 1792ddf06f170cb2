"""Change the registry: add a skill (folder, YAML file or git repository), remove it, switch it on or off.

Every change is validated against the whole registry before it stays: a change that would leave a skill with
a missing or out-of-range requirement is undone and raised as a SkillError.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from aictl.domain.errors import Conflict, NotFound, UsageError
from aictl.skills.model import SKILL_FILE, Skill, SkillError, load_skill_file
from aictl.skills.registry import AI_DIR, SkillRegistry, load_registry, load_state, project_skills_dir, save_state
from aictl.skills.resolve import validate

_AI_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,127}$")  # the AI registry's rule, kept here to stay below it
GIT_PREFIXES = ("file://", "https://", "http://", "ssh://", "git@", "git://")


def is_git_url(source: str) -> bool:
    return source.startswith(GIT_PREFIXES) or (source.endswith(".git") and not Path(source).exists())


def scope_dir(project_dir: Path | str, ai: str | None) -> Path:
    root = project_skills_dir(project_dir)
    if ai is None:
        return root
    if not _AI_ID.match(ai):
        raise UsageError(f"invalid AI id {ai!r}: use letters, digits and _.@:+- (starting with a letter or digit)")
    return root / AI_DIR / ai


def find_skills(source: Path) -> list[Skill]:
    """The skills a path holds: a skill folder, a YAML skill, or a folder (a repository) of them."""
    if source.is_file() and source.suffix in (".yaml", ".yml"):
        return [load_skill_file(source)]
    if source.is_file() and source.name == SKILL_FILE:
        return [load_skill_file(source)]
    if (source / SKILL_FILE).is_file():
        return [load_skill_file(source / SKILL_FILE)]
    if source.is_dir():
        found = [load_skill_file(p) for p in sorted(source.glob(f"*/{SKILL_FILE}"))]
        found += [load_skill_file(p) for p in sorted(source.glob("*.y*ml")) if p.suffix in (".yaml", ".yml")]
        found += [load_skill_file(p) for p in sorted(source.glob(f"skills/*/{SKILL_FILE}"))]
        if found:
            return found
    raise NotFound(f"{source}: no skill here (a folder with {SKILL_FILE}, a .yaml skill, or a folder of them)")


def _clone(url: str, into: Path) -> Path:
    done = subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", url, str(into)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise UsageError(f"git clone {url} failed: {done.stderr.strip() or done.returncode}")
    return into


def _checked(project_dir: Path | str, change: Callable[[], Callable[[], None]]) -> SkillRegistry:
    """Apply `change` (which returns its undo), then validate the whole registry; undo and raise if it fails."""
    undo = change()
    try:
        registry = load_registry(project_dir)
        validate(registry)
    except Exception:
        undo()
        raise
    return registry


def add(project_dir: Path | str, source: str, *, ai: str | None = None, dry_run: bool = False) -> list[Skill]:
    """Copy the skills at `source` (path or git URL) into the shared scope or `ai`'s; validated, all or none."""
    with tempfile.TemporaryDirectory(prefix="aictl-skill-") as tmp:
        path = _clone(source, Path(tmp) / "repo") if is_git_url(source) else Path(source).expanduser().resolve()
        if not path.exists():
            raise NotFound(f"{source}: no such file or directory")
        skills = find_skills(path)
        target = scope_dir(project_dir, ai)
        dests = []
        for s in skills:
            dest = target / (s.name if s.root is not None else Path(s.source).name)
            if dest.exists() or (target / s.name).exists() or (target / f"{s.name}.yaml").exists():
                raise Conflict(
                    f"skill {s.name!r} is already installed in {target}",
                    hint=f"aictl skill remove {s.name}" + (f" --ai {ai}" if ai else "") + " first",
                )
            dests.append((s, dest))

        def copy() -> Callable[[], None]:
            target.mkdir(parents=True, exist_ok=True)
            for s, dest in dests:
                if s.root is not None:
                    shutil.copytree(s.root, dest, ignore=shutil.ignore_patterns(".git"))
                else:
                    shutil.copy2(s.source, dest)

            def undo() -> None:
                for _, dest in dests:
                    _delete(dest)

            return undo

        registry = _checked(project_dir, copy)
        added = [registry.find(s.name, ai) for s, _ in dests]
        if dry_run:
            for _, dest in dests:
                _delete(dest)
        return [s for s in added if s is not None]


def _delete(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def installed(project_dir: Path | str, name: str, ai: str | None) -> Skill:
    """The skill `name` in exactly this scope (the shared one, or `ai`'s own)."""
    registry = load_registry(project_dir)
    skill = (registry.per_ai.get(ai, {}) if ai else registry.shared).get(name)
    if skill is None:
        where = f"for AI {ai} ({scope_dir(project_dir, ai)})" if ai else f"in {project_skills_dir(project_dir)}"
        user = registry.user.get(name)
        hint = f"it is a user-wide skill: {user.source}" if user else "aictl skill list"
        raise NotFound(f"no skill {name!r} installed {where}", hint=hint)
    return skill


def remove(project_dir: Path | str, name: str, *, ai: str | None = None, dry_run: bool = False) -> Skill:
    """Delete an installed skill; refused (nothing deleted) when another skill still requires it."""
    skill = installed(project_dir, name, ai)
    path = Path(skill.root) if skill.root is not None else Path(skill.source)
    with tempfile.TemporaryDirectory(prefix="aictl-skill-") as tmp:
        keep = Path(tmp) / path.name

        def move() -> Callable[[], None]:
            shutil.move(str(path), keep)

            def undo() -> None:
                shutil.move(str(keep), path)

            return undo

        _checked(project_dir, move)
        if dry_run:
            shutil.move(str(keep), path)
        else:
            skills_dir = project_skills_dir(project_dir)
            state = load_state(skills_dir)
            if ai is None:
                state.forget(name)
            else:
                state.disabled_for.get(ai, set()).discard(name)
                state.enabled_for.get(ai, set()).discard(name)
            save_state(skills_dir, state)
    return skill


def set_enabled(project_dir: Path | str, name: str, on: bool, *, ai: str | None = None, dry_run: bool = False) -> Skill:
    """Switch a skill on or off for every AI or for one (.ai/skills/state.yaml); validated like any change."""
    registry = load_registry(project_dir)
    skill = registry.find(name, ai)
    if skill is None:
        raise NotFound(f"no skill {name!r}" + (f" for AI {ai}" if ai else ""), hint="aictl skill list")
    skills_dir = project_skills_dir(project_dir)
    before = load_state(skills_dir)
    state_file = skills_dir / "state.yaml"
    old_text = state_file.read_text(encoding="utf-8") if state_file.is_file() else None

    def write() -> Callable[[], None]:
        before.set(name, on, ai)
        save_state(skills_dir, before)

        def undo() -> None:
            if old_text is None:
                state_file.unlink()
            else:
                state_file.write_text(old_text, encoding="utf-8")

        return undo

    try:
        _checked(project_dir, write)
    except SkillError as e:
        raise SkillError(f"cannot {'enable' if on else 'disable'} {name}: {e.message}", hint=e.hint) from None
    if dry_run:
        if old_text is None:
            state_file.unlink()
        else:
            state_file.write_text(old_text, encoding="utf-8")
    return skill


def examples_dir() -> Path:
    """aictl's example skills: aictl/examples/skills, a symlink to the top-level skills/ in a source checkout and
    real files in an installed wheel (pyproject's package-data)."""
    return Path(__file__).resolve().parents[1] / "examples" / "skills"


def copy_examples(project_dir: Path | str) -> list[str]:
    """Copy the example skills missing from .ai/skills/ (a rerun keeps edited copies); the paths created."""
    source = examples_dir()
    if not source.is_dir():
        raise NotFound(
            f"{source}: aictl's example skills are not here (an install without its package data?)",
            hint="aictl skill add <path-or-git-url> adds skills from anywhere",
        )
    target = project_skills_dir(project_dir)
    created = []
    for skill in find_skills(source):
        assert skill.root is not None  # the examples are folders
        if not (target / skill.name).exists():
            shutil.copytree(skill.root, target / skill.name)
            created.append(f".ai/skills/{skill.name}/")
    return created


__all__ = [
    "add",
    "copy_examples",
    "examples_dir",
    "find_skills",
    "installed",
    "is_git_url",
    "remove",
    "scope_dir",
    "set_enabled",
]
