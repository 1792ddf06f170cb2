"""Resolving the layers of a policy for one AI, and deciding a request: shared by the engine and the fast gate.

Works on duck-typed layers and rules (the pydantic schema's, or plain.py's copies of them), so
nothing here imports pydantic. Problems come back as tuples (file, line, message, rule id);
merge.py turns them into PolicyIssues at load time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aictl.policy.conditions import FieldTree, add_fields, referenced_fields
from aictl.policy.limits import looser_limits, merged_limit_values
from aictl.policy.matching import CompiledRule, RequestView
from aictl.policy.sources import OVERLAY_LABEL
from aictl.policy.vocab import Effect

Problem = tuple[str, int | None, str, str | None]  # file, line, message, rule id


class ResolvedPolicy:
    """The merged rules for one AI id, compiled for evaluation."""

    __slots__ = ("ai", "cel_fields", "default", "default_source", "overlays", "rules", "warnings")

    def __init__(
        self,
        ai: str | None,
        default: Effect,
        default_source: str | None,
        rules: list[CompiledRule],
        warnings: list[str],
        overlays: frozenset[str] = frozenset(),
    ):
        self.ai = ai
        self.overlays = overlays  # the task labels of the workflow overlays the policy has
        self.default = default
        self.default_source = default_source
        self.rules = rules
        self.warnings = warnings
        self.cel_fields: FieldTree = {}  # what the conditions select, so a request converts only that
        for compiled in rules:
            if compiled.rule.when is not None:
                for chain in referenced_fields(compiled.rule.when):
                    add_fields(self.cel_fields, chain)


def resolve_layers(
    layers: Sequence[Any], ai: str | None, applies: Callable[[str], bool]
) -> tuple[ResolvedPolicy, list[Problem]]:
    merged: dict[str, tuple[Any, str | None, str | None]] = {}
    issues: list[Problem] = []
    warnings: list[str] = []
    default, default_final, default_source = Effect.deny, False, None
    for layer in layers:
        if layer.scope is not None and not applies(layer.scope):
            continue
        if layer.default is not None:
            if default_final and layer.default.strictness < default.strictness:
                message = (
                    f"default {layer.default.value} loosens the final default {default.value} "
                    f"set in {default_source}; a later level may only tighten it"
                )
                issues.append((layer.source, None, message, None))
                warnings.append(message)
            else:
                default, default_source = layer.default, layer.source
        default_final = default_final or layer.default_final
        for rule in layer.rules:
            previous = merged.get(rule.id)
            if previous is not None and previous[0].final:
                problems = _loosening(rule, previous[0])
                if problems:
                    message = (
                        f"replaces final rule {rule.id!r} from {previous[0].location} but loosens it "
                        f"({'; '.join(problems)}); a final rule may only be replaced by a stricter one: "
                        f"same match and when, an equal or stricter effect, equal or smaller limits"
                    )
                    issues.append((layer.source, rule.line, message, rule.id))
                    warnings.append(f"rule {rule.id} at {rule.location} ignored: {message}")
                    continue
                rule = rule.as_final()
            merged[rule.id] = (rule, layer.scope, getattr(layer, "overlay", None))
    compiled = [CompiledRule(rule, scope, overlay) for rule, scope, overlay in merged.values()]
    overlays = frozenset(label for layer in layers if (label := getattr(layer, "overlay", None)) is not None)
    return ResolvedPolicy(ai, default, default_source, compiled, warnings, overlays), issues


def _loosening(new: Any, old: Any) -> list[str]:
    problems = []
    if new.effect.strictness < old.effect.strictness:
        problems.append(f"effect {old.effect.value} -> {new.effect.value}")
    if new.match != old.match:
        problems.append("match changed")
    if new.when != old.when:
        problems.append("when changed")
    if new.effect is not Effect.deny:
        problems += [f"limits: {p}" for p in looser_limits(new.limits, old.limits)]
    return problems


def decide(resolved: ResolvedPolicy, view: RequestView) -> dict[str, Any]:
    """Match every rule and pick the effect: the fields of a Decision, `limits` as `merged_limit_values` gives them."""
    missing = missing_overlay(resolved, view)
    if missing is not None:
        return {
            "effect": Effect.deny.value,
            "matched_rules": [],
            "reasons": [missing],
            "limits": None,
            "default_applied": False,
        }
    matched: list[CompiledRule] = []
    errors: list[str] = []
    for rule in resolved.rules:
        ok, _failed, error = rule.check(view)
        if error is not None:
            errors.append(error_reason(rule, error))
        if ok:
            matched.append(rule)
    return decide_matched(resolved.default, matched, errors, resolved.warnings)


def missing_overlay(resolved: ResolvedPolicy, view: RequestView) -> str | None:
    """Why a task is refused everything: it carries a workflow overlay's label the policy has no file for
    (deleted or renamed since its run started). Fails closed, so a lost overlay never loosens its tasks."""
    for label in view.task_labels:
        if label.startswith(OVERLAY_LABEL) and label not in resolved.overlays:
            name = label[len(OVERLAY_LABEL) :]
            return (
                f"the task carries label {label!r} but the policy has no workflow overlay {name!r} "
                f"(.ai/policies/workflows/{name}.yaml); its tasks are refused until it is back"
            )
    return None


def error_reason(rule: CompiledRule, error: str) -> str:
    outcome = "treated as matched (deny fails closed)" if rule.is_deny else "treated as not matched"
    return f"rule {rule.id}: condition error, {outcome}: {error}"


def decide_matched(
    default: Effect, matched: list[CompiledRule], errors: list[str], warnings: list[str]
) -> dict[str, Any]:
    """The effect of the matched rules (a workflow overlay's allow rules only add their limits), else the default."""
    granting = [rule for rule in matched if not rule.limits_only]
    capping = [rule for rule in matched if rule.limits_only]
    caps = [f"limits from {rule.id}" for rule in capping]
    if not granting:
        applied = default is not Effect.deny and bool(capping)
        reasons = [f"no rule matched; the default is {default.value}", *(caps if applied else [])]
        return {
            "effect": default.value,
            "matched_rules": [rule.id for rule in capping] if applied else [],
            "reasons": [*reasons, *errors, *warnings],
            "limits": merged_limit_values(rule.rule.limits for rule in capping) if applied else None,
            "default_applied": True,
        }
    effect = max((rule.effect for rule in granting), key=lambda e: e.strictness)
    reasons = [rule.rule.display_reason() for rule in granting if rule.effect is effect]
    if effect is not Effect.deny:
        reasons += caps
    return {
        "effect": effect.value,
        "matched_rules": [rule.id for rule in matched],
        "reasons": [*reasons, *errors, *warnings],
        "limits": merged_limit_values(rule.rule.limits for rule in matched if rule.effect is not Effect.deny),
        "default_applied": False,
    }
