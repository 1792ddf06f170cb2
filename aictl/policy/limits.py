"""Combining limits: the strictest wins, and telling whether one set of limits is at least as strict.

Works on any object with the fields of `schema.Limits` (the pydantic model, or the fast gate's
plain copy), so the schema — and pydantic — is imported only to build a `Limits` result.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from aictl.policy.schema import Limits

_NUMERIC = ("max_cost_usd", "max_runtime_s", "max_attempts")


def merge_limits(all_limits: Iterable[Any]) -> Limits:
    """Smallest numbers, intersection of allowed_tools, union of require_evidence, the tightest sandbox
    (docker over local, network off over on, the lowest memory)."""
    from aictl.policy.schema import Limits, Sandbox

    merged = merged_limit_values(all_limits)
    box = merged.pop("sandbox")
    # The inputs were validated when the policy loaded; model_construct skips validating them again.
    sandbox = Sandbox.model_construct(**box) if box is not None else None
    return Limits.model_construct(**merged, sandbox=sandbox)


def merged_limit_values(all_limits: Iterable[Any]) -> dict[str, Any]:
    """`merge_limits` as a plain dict with every field of Limits (sandbox a dict of its three fields, or None)."""
    numbers: dict[str, Any] = {}  # float or int, as the field named by the key
    tools: list[str] | None = None
    evidence: list[str] = []
    backend: Literal["local", "docker"] | None = None
    network: bool | None = None
    memory: int | None = None
    for limits in all_limits:
        if limits is None:
            continue
        for name in _NUMERIC:
            value = getattr(limits, name)
            if value is not None and (name not in numbers or value < numbers[name]):
                numbers[name] = value
        if limits.allowed_tools is not None:
            tools = list(limits.allowed_tools) if tools is None else [t for t in tools if t in limits.allowed_tools]
        for item in limits.require_evidence or ():
            if item not in evidence:
                evidence.append(item)
        if limits.sandbox is not None:
            if limits.sandbox.backend == "docker" or (backend is None and limits.sandbox.backend):
                backend = limits.sandbox.backend
            if limits.sandbox.network is not None:
                network = limits.sandbox.network if network is None else (network and limits.sandbox.network)
            if limits.sandbox.memory_mb is not None:
                memory = limits.sandbox.memory_mb if memory is None else min(memory, limits.sandbox.memory_mb)
    sandbox = (
        {"backend": backend, "network": network, "memory_mb": memory}
        if backend or network is not None or memory is not None
        else None
    )
    return {
        **{name: numbers.get(name) for name in _NUMERIC},
        "allowed_tools": tools,
        "require_evidence": evidence or None,
        "sandbox": sandbox,
    }


class _Unset:
    """Stands for absent limits or an absent sandbox: every field None."""

    def __getattr__(self, name: str) -> None:
        return None


_UNSET = _Unset()


def looser_limits(new: Any, old: Any) -> list[str]:
    """What `new` relaxes compared with `old` (empty when `new` is at least as strict)."""
    old = old or _UNSET
    new = new or _UNSET
    problems: list[str] = []
    for name in _NUMERIC:
        before, after = getattr(old, name), getattr(new, name)
        if before is not None and (after is None or after > before):
            problems.append(f"{name} {before} -> {after if after is not None else 'unset'}")
    if old.allowed_tools is not None:
        if new.allowed_tools is None:
            problems.append("allowed_tools unset")
        else:
            extra = [t for t in new.allowed_tools if t not in old.allowed_tools]
            if extra:
                problems.append(f"allowed_tools adds {extra}")
    missing = [e for e in old.require_evidence or () if e not in (new.require_evidence or ())]
    if missing:
        problems.append(f"require_evidence drops {missing}")
    old_box, new_box = old.sandbox or _UNSET, new.sandbox or _UNSET
    if old_box.backend == "docker" and new_box.backend != "docker":
        problems.append(f"sandbox.backend docker -> {new_box.backend or 'unset'}")
    if old_box.memory_mb is not None and (new_box.memory_mb is None or new_box.memory_mb > old_box.memory_mb):
        problems.append(f"sandbox.memory_mb {old_box.memory_mb} -> {new_box.memory_mb or 'unset'}")
    if old_box.network is False and new_box.network is not False:
        problems.append("sandbox.network false -> " + ("true" if new_box.network else "unset"))
    return problems
