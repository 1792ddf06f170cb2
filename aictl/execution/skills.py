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
    facts = {k: getattr(task, k, None) for k in keys}
    return {k: getattr(v, "value", v) for k, v in facts.items()}  # enums (type, status) as their values


def denied_skills(
    gate: Any, ai: Any, task: Any, resolved: list[Any], *, epoch: int | None = None, records: list[Any] | None = None
) -> dict[str, str]:
    """name -> why, for each skill a policy rule denies to this AI. Only a matching rule withholds a skill: the
    policy's default effect does not (a `default: deny` policy written before skills existed keeps them).
    The denying decision records are appended to `records`."""
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
            if records is not None:
                records.append(record)
    return out


def run_skills(
    task: Any, ai: Any, project_dir: Path | str | None, gate: Any, *, epoch: int | None = None, store: Any = None
) -> tuple[list[Any], dict[str, Any]]:
    """(the skills delivered to this run, the evidence record of them and of those withheld). With a store, the
    decision records of denied skills are written (audit decisions) and listed under "decisions"."""
    from aictl.agents.context import resolve_skills

    resolved = resolve_skills(task, project_dir, ai.id, ai.connector)
    records: list[Any] = []
    denied = denied_skills(gate, ai, task, resolved, epoch=epoch, records=records)
    delivered = [r for r in resolved if r.skill.name not in denied]
    record: dict[str, Any] = {
        "ai": ai.id,
        "connector": ai.connector,
        "skills": [r.evidence() for r in delivered],
        "denied": [{"name": n, "reason": why} for n, why in sorted(denied.items())],
    }
    if store is not None and records:
        from aictl.policy.records import write_record

        with store.write() as tx:
            for rec in records:
                write_record(tx, rec)
        record["decisions"] = [
            {"action": "use_skill", "decision_id": rec.decision_id, "effect": rec.effect} for rec in records
        ]
    return delivered, record


__all__ = ["denied_skills", "run_skills", "task_policy_facts"]
