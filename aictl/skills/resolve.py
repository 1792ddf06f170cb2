"""Which skills one AI gets for one task on one connector, with their requirements, versions checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aictl.skills.model import Skill, SkillError
from aictl.skills.registry import SkillRegistry, SkillState, paths_overlap


@dataclass(frozen=True)
class Resolved:
    skill: Skill
    reason: str  # "labels", "all tasks", or "required by <name>"

    def evidence(self) -> dict[str, Any]:
        s = self.skill
        return {
            "name": s.name,
            "version": s.version,
            "digest": s.digest,
            "scope": s.scope,
            "source": s.source,
            "reason": self.reason,
        }


def applies(skill: Skill, task: Any, connector: str | None) -> bool:
    """A skill applies when each of its filters (labels, capabilities, paths, connectors) is empty or met."""
    if skill.labels and not set(skill.labels) & set(getattr(task, "labels", None) or ()):
        return False
    if skill.capabilities and not set(skill.capabilities) & set(getattr(task, "required_capabilities", None) or ()):
        return False
    if skill.connectors and connector not in skill.connectors:
        return False
    return paths_overlap(skill.paths, list(getattr(task, "lock_paths", None) or ()))


def closure(roots: list[Skill], view: dict[str, Skill], state: SkillState, ai: str | None) -> dict[str, str]:
    """name -> why it is included, for `roots` and everything they require; raises on a missing, disabled,
    out-of-range or cyclic requirement."""
    why: dict[str, str] = {}
    done: set[str] = set()

    def visit(skill: Skill, path: tuple[str, ...]) -> None:
        if skill.name in done:
            return
        for req in skill.requires:
            dep = view.get(req.name)
            where = skill.where("requires")
            if dep is None:
                raise SkillError(
                    f"{where}: {skill.name} requires {req}, which is not installed" + (f" for AI {ai}" if ai else ""),
                    hint="aictl skill add PATH",
                )
            if not state.enabled(dep.name, ai):
                raise SkillError(
                    f"{where}: {skill.name} requires {req}, which is disabled" + (f" for AI {ai}" if ai else ""),
                    hint=f"aictl skill enable {dep.name}",
                )
            if not req.allows(dep.version):
                raise SkillError(
                    f"{where}: version conflict: {skill.name} requires {req}, "
                    f"but {dep.name} is {dep.version} ({dep.source})"
                )
            if dep.name in path:
                cycle = " -> ".join((*path[path.index(dep.name) :], dep.name))
                raise SkillError(f"{where}: cyclic requires: {cycle}")
            why.setdefault(dep.name, f"required by {skill.name}")
            visit(dep, (*path, dep.name))
        done.add(skill.name)

    for root in roots:
        visit(root, (root.name,))
    return why


def resolve(registry: SkillRegistry, task: Any, ai: str | None, connector: str | None = None) -> list[Resolved]:
    """The skills `ai` gets for `task`: enabled ones that apply, plus what they require, in name order."""
    view = registry.view(ai)
    chosen = [s for s in view.values() if registry.state.enabled(s.name, ai) and applies(s, task, connector)]
    reasons = {s.name: ("labels" if s.labels else "all tasks") for s in chosen}
    for name, why in closure(chosen, view, registry.state, ai).items():
        reasons.setdefault(name, why)
    return [Resolved(view[name], reasons[name]) for name in sorted(reasons)]


def validate(registry: SkillRegistry) -> list[Skill]:
    """Check requires (present, enabled, in range, no cycle) in every AI's view; the skills checked."""
    for ai in [None, *sorted(registry.per_ai)]:
        view = registry.view(ai)
        for skill in view.values():
            if registry.state.enabled(skill.name, ai):
                closure([skill], view, registry.state, ai)
    return registry.all()


def check_project(project_dir: Any) -> int:
    """Validate a project's skills (and the user's) where a broken one must stop a command; how many there are."""
    if project_dir is None:
        return 0
    from aictl.skills.registry import load_registry

    return len(validate(load_registry(project_dir)))


__all__ = ["Resolved", "applies", "check_project", "closure", "resolve", "validate"]
