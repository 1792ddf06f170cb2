"""Put the skills of one run where its agent reads them natively, and take them away before the diff.

claude-code: .claude/skills/<name>/ (SKILL.md and files) in the worktree; codex: <CODEX_HOME>/skills/<name>/, which
Codex (0.169) lists under "Available skills" and reads on demand (written by the codex connector, outside the worktree);
anthropic/openai/ollama: an index (names, descriptions) in the system prompt and a `load_skill` tool
(progressive disclosure); any other AI connector: the skills' whole text in the system prompt.
aictl only writes the files: a skill's scripts run, if at all, through the agent's own policy-checked tools.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODES = {"claude-code": "claude-skills", "codex": "codex-home", "anthropic": "tool", "openai": "tool", "ollama": "tool"}
MANAGED = ".aictl-skill"  # marks a folder aictl wrote, so a later sync may replace or remove it
LOAD_SKILL = "load_skill"


def mode_for(connector: str | None) -> str:
    return MODES.get(connector or "", "inline")


def inline_text(skill: Any) -> str:
    text = f"## Skill: {skill.name}\n{skill.description}"
    return text + "\n\n" + skill.body if skill.body else text


def system_section(skills: list[Any], mode: str) -> str:
    """What the system prompt says about the skills (native modes: the agent finds them itself)."""
    if not skills:
        return ""
    if mode == "tool":
        lines = [
            "## Skills",
            f"Skills hold instructions for particular kinds of work. Before work a skill is about, "
            f"call {LOAD_SKILL} with its name to read its instructions and the list of its files "
            f"({LOAD_SKILL} with a file reads one of them).",
        ]
        lines += [f"- {s.name}: {s.description}" for s in skills]
        return "\n".join(lines)
    if mode == "inline":
        return "\n\n".join(inline_text(s) for s in skills)
    return ""


def load_skill(skills: list[Any], name: Any, file: Any = None) -> tuple[bool, str]:
    """(ok, text) of the load_skill tool: a skill's body and file list, or one of its files."""
    by_name = {s.name: s for s in skills}
    skill = by_name.get(str(name))
    if skill is None:
        return False, f"no skill {name!r}; the skills are: {', '.join(sorted(by_name)) or 'none'}"
    files = skill.files()
    if file:
        if str(file) not in files:
            return False, f"skill {skill.name} has no file {file!r}; its files: {', '.join(files) or 'none'}"
        return True, skill.read_file(str(file))
    listing = "\n".join(f"- {f}" for f in files) or "(none)"
    return True, f"# Skill {skill.ref}\n{skill.description}\n\n{skill.body}\n\nFiles of this skill:\n{listing}"


def write_skill(dest: Path, skill: Any) -> None:
    """A skill as a folder in the Agent Skills layout: its files, then its normalized SKILL.md."""
    if skill.root is not None:
        shutil.copytree(skill.root, dest, ignore=shutil.ignore_patterns(".git"))
    else:
        dest.mkdir(parents=True)
        for rel in skill.files():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_text(skill.read_file(rel), encoding="utf-8")
    (dest / "SKILL.md").write_text(skill.skill_md(), encoding="utf-8")


def sync_home(skills_dir: Path | str, skills: list[Any]) -> list[str]:
    """Make an agent home's skills folder hold exactly this run's skills (the folders aictl wrote earlier are
    replaced or removed; anything else there is left alone). The names written."""
    root = Path(skills_dir)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.is_dir() and not old.is_symlink() and (old / MANAGED).is_file():
            shutil.rmtree(old)
    written = []
    for s in skills:
        dest = root / s.name
        if dest.exists() or dest.is_symlink():  # not aictl's: the user's own skill of this name wins
            continue
        write_skill(dest, s)
        (dest / MANAGED).write_text(f"{s.ref}\n", encoding="utf-8")
        written.append(s.name)
    return written


def materialize(workdir: Path | str, skills: list[Any], mode: str) -> Callable[[], None]:
    """Write the skills where the agent reads them; returns the undo (run it before the diff is collected)."""
    root = Path(workdir)
    if not skills or mode != "claude-skills":
        return lambda: None
    created: list[Path] = []
    for d in (root / ".claude", root / ".claude" / "skills"):
        if not d.exists():
            d.mkdir()
            created.append(d)
    written = []
    for s in skills:
        dest = root / ".claude" / "skills" / s.name
        if dest.exists():  # the repository has its own skill of this name: it wins, untouched
            continue
        write_skill(dest, s)
        written.append(dest)

    def undo_claude() -> None:
        for dest in written:
            shutil.rmtree(dest, ignore_errors=True)
        for d in reversed(created):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()

    return undo_claude


__all__ = [
    "LOAD_SKILL",
    "MODES",
    "inline_text",
    "load_skill",
    "materialize",
    "mode_for",
    "sync_home",
    "system_section",
    "write_skill",
]
