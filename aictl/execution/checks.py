"""Result checks after a run; each one is a Policy Decision Record.

Built-in checks carry rule ids of the form `aictl:<check>` (locks, verify,
runtime, budget); the protected-paths check asks the project policy
(`write_path` for every changed path).
"""

from __future__ import annotations

from typing import Any

from aictl.policy.records import DecisionRecord, make_record
from aictl.tasks.globs import path_matches


def builtin_record(
    action: str,
    *,
    ok: bool,
    rule: str,
    reasons: list[str],
    task: Any,
    owner: str,
    epoch: int,
    sources: list[dict[str, Any]],
    paths: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> DecisionRecord:
    """A decision record for a check aictl itself enforces (not a policy rule)."""
    from aictl.policy.engine import Decision, PolicyRequest, Resource, Subject

    request = PolicyRequest(
        subject=Subject(ai=owner, actor=owner, task_id=task.id, lease_epoch=epoch),
        action=action,
        resource=Resource(
            task={"id": task.id, "title": task.title, "lock_paths": task.lock_paths},
            paths=paths or [],
            extra=extra or {},
        ),
    )
    decision = Decision(effect="allow" if ok else "deny", matched_rules=[rule], reasons=reasons)
    return make_record(request, decision, sources)


def check_locks(task: Any, paths: list[str]) -> tuple[bool, list[str]]:
    """Every changed path must lie inside the task's lock globs."""
    if not paths:
        return True, ["no files changed"]
    outside = [p for p in paths if not task.lock_paths or not path_matches(task.lock_paths, p)]
    if not outside:
        return True, [f"all {len(paths)} changed path(s) are inside the task's locks"]
    if not task.lock_paths:
        return False, [
            f"the task declares no lock paths, so it may not change files; changed: {', '.join(outside[:10])}"
        ]
    more = f" (and {len(outside) - 10} more)" if len(outside) > 10 else ""
    return False, [f"changed outside the task's locks ({', '.join(task.lock_paths)}): {', '.join(outside[:10])}{more}"]


def protected_paths(
    gate: Any, task_facts: dict[str, Any], owner: str, ai: str | None, epoch: int, paths: list[str]
) -> tuple[DecisionRecord, list[str]]:
    """Ask the policy about writing every changed path; name the paths it refuses."""
    record = gate.check("write_path", ai=ai or owner, actor=owner, task=task_facts, epoch=epoch, paths=paths)
    if record.effect == "allow":
        return record, []
    refused = [
        p
        for p in paths
        if gate.check("write_path", ai=ai or owner, actor=owner, task=task_facts, epoch=epoch, path=p).effect != "allow"
    ]
    record.reasons.append(f"refused paths: {', '.join(refused[:10])}")
    return record, refused
