"""The policy gate the task plane and the executor call at each enforcement point.

`check` evaluates a request, and returns the Decision Record (not yet written);
the caller writes it in the transaction that acts on it, or — for a denial,
whose transaction rolls back — in a transaction of its own, so a refused
action still leaves its record.

The gate runs in every claim and complete, so it stays off pydantic: `load_gate` reads the
compiled policy (compiled.py, cached in the state dir) and requests are the plain `GateRequest`.
It gives the same decisions as `engine.evaluate` on the EffectivePolicy (resolve.py is shared).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aictl.domain.errors import PolicyDenied
from aictl.policy.compiled import CompiledPolicy, compile_policy, load_compiled
from aictl.policy.matching import RequestView
from aictl.policy.records import DecisionRecord, make_record, policy_digest
from aictl.policy.resolve import decide
from aictl.policy.vocab import KNOWN_ACTIONS


@dataclass(slots=True)
class GateSubject:
    ai: str | None = None
    ai_labels: list[str] = field(default_factory=list)
    task_id: int | None = None
    lease_epoch: int | None = None
    actor: str | None = None


@dataclass(slots=True)
class GateResource:
    task: dict[str, Any] | None = None
    path: str | None = None
    paths: list[str] = field(default_factory=list)
    command: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class GateRequest:
    """engine.PolicyRequest without pydantic: what RequestView reads, and the same JSON dump."""

    subject: GateSubject
    action: str
    resource: GateResource
    context: dict[str, Any]

    def __post_init__(self) -> None:
        if self.action not in KNOWN_ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; known actions: {', '.join(KNOWN_ACTIONS)}")

    def model_dump(self, *, mode: str = "json") -> dict[str, Any]:
        s, r = self.subject, self.resource
        return {
            "subject": {
                "ai": s.ai,
                "ai_labels": list(s.ai_labels),
                "task_id": s.task_id,
                "lease_epoch": s.lease_epoch,
                "actor": s.actor,
            },
            "action": self.action,
            "resource": {
                "task": jsonable(r.task),
                "path": r.path,
                "paths": list(r.paths),
                "command": r.command,
                "extra": jsonable(r.extra),
            },
            "context": jsonable(self.context),
        }


@dataclass(slots=True)
class GateDecision:
    effect: str
    matched_rules: list[str]
    reasons: list[str]
    limits: dict[str, Any] | None  # as resolve.merged_limit_values gives them; None when no rule matched
    default_applied: bool
    eval_ms: float = 0.0

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"


def jsonable(value: Any) -> Any:
    # What pydantic's JSON mode does to the containers callers pass (tuples and sets become lists).
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value


NO_POLICY_REASON = "no policy file exists (.ai/policy.yaml or the global one), so every action is denied"
NO_POLICY_HINT = "create the project's policy with: aictl init  (or copy one from policies/ to .ai/policy.yaml)"


class PolicyGate:
    def __init__(self, policy: Any):
        """`policy`: a compiled.CompiledPolicy, or an EffectivePolicy (compiled here).

        A policy without any source file is deny-all: it decides, it never switches checks off.
        """
        if not isinstance(policy, CompiledPolicy):
            policy = compile_policy(policy)[0]
        self.policy = policy
        self.sources = [{"path": s["path"], "sha256": s["sha256"]} for s in policy.sources]
        self.digest = policy_digest(self.sources)
        self.empty = not self.sources

    def evaluate(self, request: GateRequest) -> GateDecision:
        started = time.perf_counter()
        resolved = self.policy.resolve(request.subject.ai)
        decision = GateDecision(**decide(resolved, RequestView(request, resolved.cel_fields)))  # type: ignore[arg-type]
        if self.empty:
            decision.effect = "deny"  # no file: whatever a stray default said, nothing is allowed
            decision.reasons = [f"{NO_POLICY_REASON}; {NO_POLICY_HINT}"]
        decision.eval_ms = (time.perf_counter() - started) * 1000
        return decision

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
        extra: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> DecisionRecord:
        request = GateRequest(
            subject=GateSubject(
                ai=ai, ai_labels=list(ai_labels or []), task_id=(task or {}).get("id"), lease_epoch=epoch, actor=actor
            ),
            action=action,
            resource=GateResource(task=task, path=path, paths=list(paths or []), command=command, extra=extra or {}),
            context=context or {},
        )
        return make_record(request, self.evaluate(request), self.sources, ts=now)


def denied_error(record: DecisionRecord) -> PolicyDenied:
    what = f"task {record.task_id}" if record.task_id is not None else "the request"
    verb = "needs approval" if record.effect == "require_approval" else "is denied"
    rules = f" (matched: {', '.join(record.matched_rules)})" if record.matched_rules else ""
    hint = f"see the decision: aictl audit decision {record.decision_id[:12]}"
    if not record.sources:
        hint = f"{NO_POLICY_HINT}; {hint}"
    return PolicyDenied(
        f"policy: {record.action} on {what} {verb}: {'; '.join(record.reasons)}{rules}",
        hint=hint,
        details={"decision_id": record.decision_id, "effect": record.effect, "rules": record.matched_rules},
    )


def load_gate(project_dir: Any, *, ai_id: str | None = None, state_dir: Any = None) -> PolicyGate:
    """The project's policy gate; deny-all (`gate.empty`) when no policy file exists anywhere, never "no checks".

    Without `ai_id` the compiled policy comes from `<state_dir>/cache` (default: the project's .ai/)
    when its files are unchanged.
    """
    if ai_id is not None:
        from aictl.policy.merge import load_effective_policy

        policy: Any = load_effective_policy(project_dir, ai_id=ai_id)
    else:
        policy = load_compiled(project_dir, cache_dir=Path(state_dir) / "cache" if state_dir is not None else None)
    return PolicyGate(policy)
