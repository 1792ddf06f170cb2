"""The policy gate the task plane and the executor call at each enforcement point.

`check` evaluates a request, and returns the Decision Record (not yet written);
the caller writes it in the transaction that acts on it, or — for a denial,
whose transaction rolls back — in a transaction of its own, so a refused
action still leaves its record.
"""

from __future__ import annotations

from typing import Any

from aictl.domain.errors import PolicyDenied
from aictl.policy.records import DecisionRecord, make_record, policy_digest


class PolicyGate:
    def __init__(self, policy: Any):
        self.policy = policy
        self.sources = [{"path": s.path, "sha256": s.sha256} for s in policy.sources]
        self.digest = policy_digest(self.sources)

    def check(
        self,
        action: str,
        *,
        ai: str | None,
        actor: str | None = None,
        ai_labels: list[str] | None = None,
        task: dict[str, Any] | None = None,
        epoch: int | None = None,
        path: str | None = None,
        paths: list[str] | None = None,
        command: str | None = None,
        context: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> DecisionRecord:
        from aictl.policy.engine import PolicyRequest, Resource, Subject, evaluate

        request = PolicyRequest(
            subject=Subject(
                ai=ai, ai_labels=ai_labels or [], task_id=(task or {}).get("id"), lease_epoch=epoch, actor=actor
            ),
            action=action,
            resource=Resource(task=task, path=path, paths=paths or [], command=command),
            context=context or {},
        )
        return make_record(request, evaluate(self.policy, request), self.sources, ts=now)


def denied_error(record: DecisionRecord) -> PolicyDenied:
    what = f"task {record.task_id}" if record.task_id is not None else "the request"
    verb = "needs approval" if record.effect == "require_approval" else "is denied"
    rules = f" (matched: {', '.join(record.matched_rules)})" if record.matched_rules else ""
    return PolicyDenied(
        f"policy: {record.action} on {what} {verb}: {'; '.join(record.reasons)}{rules}",
        hint=f"see the decision: aictl audit decision {record.decision_id[:12]}",
        details={"decision_id": record.decision_id, "effect": record.effect, "rules": record.matched_rules},
    )


def load_gate(project_dir: Any, *, ai_id: str | None = None) -> PolicyGate | None:
    """The project's policy gate, or None when no policy file exists anywhere (enforcement off)."""
    from aictl.policy.merge import load_effective_policy

    policy = load_effective_policy(project_dir, ai_id=ai_id)
    return PolicyGate(policy) if policy.sources else None
