"""The skills one run gets: resolved for (task, AI, connector), minus those a policy rule denies (`use_skill`).

What reached the run (name@version, digest, scope, why) is written as evidence and goes into the run's record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def task_policy_facts(task: Any) -> dict[str, Any]:
    """What a policy sees of a task (resource.task), from a Task model."""
    keys = (
        "id",
        "title",
        "type",
        "priority",
        "status",
        "labels",
        "required_capabilities",
        "lock_paths",
        "exclusive",
        "attempts",
        "max_attempts",
    )
    return {k: (v.value if hasattr(v, "value") else v) for k in keys for v in [getattr(task, k, None)]}


def denied_skills(gate: Any, ai: Any, task: Any, resolved: list[Any], *, epoch: int | None = None) -> dict[str, str]:
    """name -> why, for each skill a policy rule denies to this AI. Only a matching rule withholds a skill: the
    policy's default effect does not (a `default: deny` policy written before skills existed keeps them)."""
    if gate is None or not resolved:
        return {}
    facts = task_policy_facts(task)
    out = {}
    for r in resolved:
        record = gate.check(
            "use_skill",
            ai=ai.id,
            actor=ai.id,
            ai_labels=list(ai.labels or []),
            task=facts,
            epoch=epoch,
            context={"skill": r.skill.name, "version": r.skill.version, "scope": r.skill.scope},
        )
        if record.effect != "allow" and record.matched_rules:
            out[r.skill.name] = "denied by policy: " + (", ".join(record.matched_rules))
    return out


def run_skills(
    task: Any, ai: Any, project_dir: Path | str | None, gate: Any, *, epoch: int | None = None
) -> tuple[list[Any], dict[str, Any]]:
    """(the skills delivered to this run, the evidence record of them and of those withheld)."""
    from aictl.agents.context import resolve_skills

    resolved = resolve_skills(task, project_dir, ai.id, ai.connector)
    denied = denied_skills(gate, ai, task, resolved, epoch=epoch)
    delivered = [r for r in resolved if r.skill.name not in denied]
    record = {
        "ai": ai.id,
        "connector": ai.connector,
        "skills": [r.evidence() for r in delivered],
        "denied": [{"name": n, "reason": why} for n, why in sorted(denied.items())],
    }
    return delivered, record


__all__ = ["denied_skills", "run_skills", "task_policy_facts"]
