"""Evaluating a request against an EffectivePolicy: `evaluate` for enforcement, `explain` for people.

Semantics: a rule matches when every match field it has matches and its `when` is true.
Among matching rules deny beats require_approval beats allow; no match means the default
(deny unless a level says otherwise). Evaluation never raises on a CEL error: a deny rule
whose condition errors counts as matched (fail closed), any other rule as not matched.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from aictl.policy.matching import CompiledRule, RequestView
from aictl.policy.merge import EffectivePolicy
from aictl.policy.request import PolicyRequest, Resource, Subject
from aictl.policy.resolve import decide, decide_matched, error_reason, missing_overlay
from aictl.policy.schema import Limits, Sandbox

# The request types live in request.py (matching needs them below the engine); callers import them from here too.
__all__ = [
    "Decision",
    "EffectName",
    "Explanation",
    "PolicyRequest",
    "Resource",
    "RuleTrace",
    "Subject",
    "evaluate",
    "explain",
]

EffectName = Literal["allow", "deny", "require_approval"]


class Decision(BaseModel):
    effect: EffectName
    matched_rules: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    default_applied: bool = False
    eval_ms: float = 0.0

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"


class RuleTrace(BaseModel):
    """One rule in an explanation: did it match, and if not, which part failed and why."""

    id: str
    effect: EffectName
    source: str | None = None
    line: int | None = None
    scope: str | None = None
    final: bool = False
    matched: bool
    failed: str | None = None  # the match field that failed: actions, ai, ..., or "when"
    why: str = ""
    condition_error: str | None = None


class Explanation(BaseModel):
    decision: Decision
    ai: str | None = None
    default: EffectName
    default_source: str | None = None
    rules: list[RuleTrace]
    warnings: list[str] = Field(default_factory=list)


def evaluate(policy: EffectivePolicy, request: PolicyRequest) -> Decision:
    started = time.perf_counter()
    resolved = policy.resolve(request.subject.ai)
    decision = _decision(decide(resolved, RequestView(request, resolved.cel_fields)))
    decision.eval_ms = (time.perf_counter() - started) * 1000
    return decision


def explain(policy: EffectivePolicy, request: PolicyRequest) -> Explanation:
    """Evaluate, and say for every rule whether it matched and what failed when it did not."""
    started = time.perf_counter()
    resolved = policy.resolve(request.subject.ai)
    view = RequestView(request, resolved.cel_fields)
    matched: list[CompiledRule] = []
    errors: list[str] = []
    traces: list[RuleTrace] = []
    for rule in resolved.rules:
        ok, failed, error = rule.check(view)
        if error is not None:
            errors.append(error_reason(rule, error))
        if ok:
            matched.append(rule)
        if ok and error is not None:
            why = f"condition error ({error}); a deny rule fails closed, so it counts as matched"
        elif ok:
            why = "all match fields and the condition hold"
        else:
            why = rule.explain_failure(failed or "", view, error)
        traces.append(
            RuleTrace(
                id=rule.id,
                effect=rule.effect.value,
                source=rule.rule.source,
                line=rule.rule.line,
                scope=rule.scope,
                final=rule.rule.final,
                matched=ok,
                failed=None if ok and error is None else failed,
                why=why,
                condition_error=error,
            )
        )
    missing = missing_overlay(resolved, view)
    if missing is not None:
        decision = _decision(decide(resolved, view))
    else:
        decision = _decision(decide_matched(resolved.default, matched, errors, resolved.warnings))
    decision.eval_ms = (time.perf_counter() - started) * 1000
    return Explanation(
        decision=decision,
        ai=request.subject.ai,
        default=resolved.default.value,
        default_source=resolved.default_source,
        rules=traces,
        warnings=resolved.warnings,
    )


def _decision(fields: dict[str, Any]) -> Decision:
    # model_construct: every value here is already valid, and validation would double the decision time.
    limits = fields["limits"]
    if limits is None:
        model = Limits.model_construct()
    else:
        box = limits["sandbox"]
        model = Limits.model_construct(**{**limits, "sandbox": Sandbox.model_construct(**box) if box else None})
    return Decision.model_construct(**{**fields, "limits": model, "eval_ms": 0.0})
