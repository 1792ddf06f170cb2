"""Evaluating a request against an EffectivePolicy: `evaluate` for enforcement, `explain` for people.

Semantics: a rule matches when every match field it has matches and its `when` is true.
Among matching rules deny beats require_approval beats allow; no match means the default
(deny unless a level says otherwise). Evaluation never raises on a CEL error: a deny rule
whose condition errors counts as matched (fail closed), any other rule as not matched.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

from aictl.policy.limits import merge_limits
from aictl.policy.matching import CompiledRule, RequestView
from aictl.policy.merge import EffectivePolicy
from aictl.policy.request import PolicyRequest, Resource, Subject
from aictl.policy.schema import Effect, Limits

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
    view = RequestView(request, resolved.cel_fields)
    matched: list[CompiledRule] = []
    errors: list[str] = []
    for rule in resolved.rules:
        ok, _failed, error = rule.check(view)
        if error is not None:
            errors.append(_error_reason(rule, error))
        if ok:
            matched.append(rule)
    decision = _decide(resolved.default, matched, errors, resolved.warnings)
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
            errors.append(_error_reason(rule, error))
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
    decision = _decide(resolved.default, matched, errors, resolved.warnings)
    decision.eval_ms = (time.perf_counter() - started) * 1000
    return Explanation(
        decision=decision,
        ai=request.subject.ai,
        default=resolved.default.value,
        default_source=resolved.default_source,
        rules=traces,
        warnings=resolved.warnings,
    )


def _error_reason(rule: CompiledRule, error: str) -> str:
    outcome = "treated as matched (deny fails closed)" if rule.is_deny else "treated as not matched"
    return f"rule {rule.id}: condition error, {outcome}: {error}"


def _decide(default: Effect, matched: list[CompiledRule], errors: list[str], warnings: list[str]) -> Decision:
    # model_construct: every value here is already valid, and validation would double the decision time.
    if not matched:
        reasons = [f"no rule matched; the default is {default.value}", *errors, *warnings]
        return Decision.model_construct(
            effect=default.value,
            matched_rules=[],
            reasons=reasons,
            limits=Limits.model_construct(),
            default_applied=True,
            eval_ms=0.0,
        )
    effect = max((rule.effect for rule in matched), key=lambda e: e.strictness)
    reasons = [rule.rule.display_reason() for rule in matched if rule.effect is effect]
    limits = merge_limits(rule.rule.limits for rule in matched if rule.effect is not Effect.deny)
    return Decision.model_construct(
        effect=effect.value,
        matched_rules=[rule.id for rule in matched],
        reasons=[*reasons, *errors, *warnings],
        limits=limits,
        default_applied=False,
        eval_ms=0.0,
    )
