"""The skills a project has, by scope, and which of them each AI gets for a task.

Layout (precedence when names collide: per-AI > shared > user):

    .ai/skills/<name>/SKILL.md            shared: every AI
    .ai/skills/<name>.yaml                shared, single-file form
    .ai/skills/ai/<ai-id>/<name>/...      per AI: only <ai-id> (either form)
    .ai/skills/state.yaml                 enable/disable state (`aictl skill enable|disable`)
    $AICTL_CONFIG_DIR/skills/<name>/...   user-wide, below the project's

A folder directly under .ai/skills/ without a SKILL.md is an error (it may be meant as a per-AI folder,
which lives under ai/), so nothing meant for one AI reaches every AI by accident.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aictl.skills.model import SKILL_FILE, Skill, SkillError, load_skill_file

STATE_FILE = "state.yaml"
AI_DIR = "ai"
SCOPES = ("ai", "shared", "user")  # highest precedence first


def project_skills_dir(project_dir: Path | str) -> Path:
    return Path(project_dir) / ".ai" / "skills"


def user_skills_dir() -> Path:
    from aictl.config import user_config_dir

    return user_config_dir() / "skills"


def _scan(directory: Path, scope: str, ai: str | None, *, allow_ai_dir: bool) -> list[Skill]:
    out: list[Skill] = []
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return out
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if allow_ai_dir and entry.name == AI_DIR:
                continue
            path = Path(entry.path)
            if not (path / SKILL_FILE).is_file():
                raise SkillError(
                    f"{path}: a skill folder needs a {SKILL_FILE}",
                    hint=f"skills for one AI go in {directory / AI_DIR / '<ai-id>' / path.name}/<skill>/",
                )
            out.append(load_skill_file(path / SKILL_FILE, scope=scope, ai=ai))
        elif entry.name.endswith((".yaml", ".yml")) and entry.name != STATE_FILE:
            out.append(load_skill_file(entry.path, scope=scope, ai=ai))
    return out


@dataclass
class SkillState:
    """Which skills are switched off, for everyone or for one AI (.ai/skills/state.yaml)."""

    disabled: set[str] = field(default_factory=set)
    disabled_for: dict[str, set[str]] = field(default_factory=dict)
    enabled_for: dict[str, set[str]] = field(default_factory=dict)  # back on for one AI though off for all

    def enabled(self, name: str, ai: str | None) -> bool:
        if ai is not None and name in self.disabled_for.get(ai, ()):
            return False
        if ai is not None and name in self.enabled_for.get(ai, ()):
            return True
        return name not in self.disabled

    def set(self, name: str, on: bool, ai: str | None) -> None:
        if ai is None:
            (self.disabled.discard if on else self.disabled.add)(name)
            return
        off_for, on_for = self.disabled_for.setdefault(ai, set()), self.enabled_for.setdefault(ai, set())
        if on:
            off_for.discard(name)
            if name in self.disabled:
                on_for.add(name)
        else:
            on_for.discard(name)
            off_for.add(name)

    def forget(self, name: str) -> None:
        self.disabled.discard(name)
        for group in (*self.disabled_for.values(), *self.enabled_for.values()):
            group.discard(name)

    def to_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"disabled": sorted(self.disabled)}
        for key, groups in (("disabled_for", self.disabled_for), ("enabled_for", self.enabled_for)):
            kept = {ai: sorted(names) for ai, names in sorted(groups.items()) if names}
            if kept:
                out[key] = kept
        return out


def load_state(skills_dir: Path) -> SkillState:
    path = skills_dir / STATE_FILE
    if not path.is_file():
        return SkillState()
    from aictl.yamlfile import read_yaml

    data = read_yaml(path) or {}
    if not isinstance(data, dict) or set(data) - {"disabled", "disabled_for", "enabled_for"}:
        raise SkillError(f"{path}:1: state.yaml holds disabled, disabled_for and enabled_for only")

    def groups(key: str) -> dict[str, set[str]]:
        value = data.get(key) or {}
        if not isinstance(value, dict):
            raise SkillError(f"{path}: '{key}' maps an AI id to a list of skill names")
        return {str(ai): {str(n) for n in names or []} for ai, names in value.items()}

    return SkillState({str(n) for n in data.get("disabled") or []}, groups("disabled_for"), groups("enabled_for"))


def save_state(skills_dir: Path, state: SkillState) -> None:
    import yaml

    skills_dir.mkdir(parents=True, exist_ok=True)
    text = "# aictl skill enable|disable writes this file\n" + yaml.safe_dump(state.to_yaml(), sort_keys=False)
    tmp = skills_dir / (STATE_FILE + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(skills_dir / STATE_FILE)


@dataclass
class SkillRegistry:
    """Every installed skill of a project and its user, loaded once; `view(ai)` is what one AI can see."""

    project_dir: Path | None
    shared: dict[str, Skill]
    user: dict[str, Skill]
    per_ai: dict[str, dict[str, Skill]]
    state: SkillState

    def view(self, ai: str | None) -> dict[str, Skill]:
        """name -> the skill this AI sees under that name (per-AI over shared over user), enabled or not."""
        out = dict(self.user)
        out.update(self.shared)
        if ai is not None:
            out.update(self.per_ai.get(ai, {}))
        return out

    def all(self) -> list[Skill]:
        return [*self.user.values(), *self.shared.values(), *(s for d in self.per_ai.values() for s in d.values())]

    def find(self, name: str, ai: str | None = None) -> Skill | None:
        return self.view(ai).get(name)


def load_registry(project_dir: Path | str | None, *, user_dir: Path | None = None) -> SkillRegistry:
    """Read every scope; a malformed skill raises SkillError naming file and line."""
    shared: dict[str, Skill] = {}
    per_ai: dict[str, dict[str, Skill]] = {}
    state = SkillState()
    if project_dir is not None:
        root = project_skills_dir(project_dir)
        shared = _unique(_scan(root, "shared", None, allow_ai_dir=True))
        try:
            ai_dirs = sorted(e.name for e in os.scandir(root / AI_DIR) if e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            ai_dirs = []
        for ai in ai_dirs:
            per_ai[ai] = _unique(_scan(root / AI_DIR / ai, "ai", ai, allow_ai_dir=False))
        state = load_state(root)
    user = _unique(_scan(user_dir if user_dir is not None else user_skills_dir(), "user", None, allow_ai_dir=False))
    return SkillRegistry(Path(project_dir) if project_dir is not None else None, shared, user, per_ai, state)


def _unique(skills: list[Skill]) -> dict[str, Skill]:
    out: dict[str, Skill] = {}
    for s in skills:
        if s.name in out:
            raise SkillError(f"{s.where('name')}: skill {s.name!r} is also defined in {out[s.name].source}")
        out[s.name] = s
    return out


def _static_prefix(pattern: str) -> str:
    cut = min((i for i, c in enumerate(pattern) if c in "*?["), default=len(pattern))
    return pattern[:cut]


def paths_overlap(skill_paths: tuple[str, ...], task_paths: list[str]) -> bool:
    """Could a task locked to `task_paths` touch a file the skill is about? (no lock: it could touch anything)"""
    if not skill_paths or not task_paths:
        return True
    for p in skill_paths:
        for t in task_paths:
            a, b = _static_prefix(p), _static_prefix(t)
            if a.startswith(b) or b.startswith(a) or fnmatch.fnmatch(t, p) or fnmatch.fnmatch(p, t):
                return True
    return False


__all__ = [
    "AI_DIR",
    "SCOPES",
    "STATE_FILE",
    "SkillRegistry",
    "SkillState",
    "load_registry",
    "load_state",
    "paths_overlap",
    "project_skills_dir",
    "save_state",
    "user_skills_dir",
]
