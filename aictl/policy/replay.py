"""Replay recorded decisions under a new policy: which of them would come out differently?

`replay(records, policy)` re-evaluates each record's stored input (`DecisionRecord.input`,
read back with `PolicyRequest.model_validate`) and compares the new effect and matched
rule ids with the recorded ones. `load_replay_policy(new_file, project_dir)` builds the
hierarchy the new file would live in if it replaced the project's `.ai/policy.yaml`::

    global policy (user config dir, if any)  →  NEW_POLICY (project level, with its `ai:` sections)
                                             →  <project>/.ai/policies/ai/*.yaml (per-AI files)

With `alone=True` only NEW_POLICY is used. The old side is what was recorded, under the
policy files of that time (their hashes are in the record), so a change to the global or
per-AI files since then shows up as a change too.

Limits of a replay, said plainly:

- Inputs are stored with secrets masked: a rule whose condition looks at a secret value
  sees ``[REDACTED]`` where the original request had the secret.
- Only the policy is replayed. A completion the task plane refused for missing evidence
  (`limits.require_evidence`) was recorded as deny although the policy allowed it; the
  replay compares against the policy's allow, and does not re-check evidence.
- Limits are not compared; only the effect and the set of matched rule ids.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_serializer

from aictl.domain.errors import UsageError
from aictl.policy.engine import PolicyRequest, evaluate
from aictl.policy.loader import PolicyIssue, issues_error, load_model_file
from aictl.policy.merge import (
    EffectivePolicy,
    FileLevel,
    default_global_policy_path,
    load_ai_files,
    load_overlays,
    merge_policies,
)
from aictl.policy.records import DecisionRecord
from aictl.policy.schema import PolicyFile
from aictl.policy.sources import overlay_files

# The task plane appends these reasons when it turns a policy allow into a deny (tasks/service.py).
_EVIDENCE_REASON = "completion requires"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ReplayResult(BaseModel):
    """One recorded decision and what the new policy says about the same input."""

    decision_id: str
    ts: float
    ai: str | None = None
    action: str
    task_id: int | None = None
    old_effect: str = Field(description="the effect the policy gave when the decision was made")
    new_effect: str | None = Field(None, description="None when the stored input could not be replayed")
    old_rules: list[str] = Field(default_factory=list)
    new_rules: list[str] = Field(default_factory=list)
    new_reasons: list[str] = Field(default_factory=list)
    changed: bool = Field(description="the effect or the set of matched rules differs (or the input failed)")
    recorded_effect: str = Field(description="the effect on record (differs from old_effect after an evidence check)")
    note: str | None = None
    error: str | None = None

    @field_serializer("ts")
    def _iso(self, v: float) -> str:
        return datetime.fromtimestamp(v, tz=UTC).isoformat(timespec="milliseconds")


def replay(records: Iterable[DecisionRecord], policy: EffectivePolicy) -> list[ReplayResult]:
    """Re-evaluate every record's input under `policy`; all of them, changed or not, in the given order."""
    return [replay_one(record, policy) for record in records]


def replay_one(record: DecisionRecord, policy: EffectivePolicy) -> ReplayResult:
    old_effect, note = record.effect, None
    if record.effect == "deny" and any(r.startswith(_EVIDENCE_REASON) for r in record.reasons):
        old_effect = "allow"
        note = "recorded deny came from the evidence check; the policy itself allowed it"
    base = dict(
        decision_id=record.decision_id,
        ts=record.ts,
        ai=record.ai,
        action=record.action,
        task_id=record.task_id,
        old_effect=old_effect,
        old_rules=list(record.matched_rules),
        recorded_effect=record.effect,
        note=note,
    )
    try:
        request = PolicyRequest.model_validate(record.input)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return ReplayResult(**base, changed=True, error=f"stored input is not a valid request: {problems}")
    decision = evaluate(policy, request)
    changed = decision.effect != old_effect or set(decision.matched_rules) != set(record.matched_rules)
    return ReplayResult(
        **base,
        new_effect=decision.effect,
        new_rules=list(decision.matched_rules),
        new_reasons=list(decision.reasons),
        changed=changed,
    )


def load_replay_policy(
    new_policy: str | Path,
    project_dir: str | Path | None = None,
    *,
    global_path: str | Path | None = None,
    alone: bool = False,
) -> EffectivePolicy:
    """The hierarchy with `new_policy` in place of `<project>/.ai/policy.yaml` (see the module docstring).

    Raises ConfigError listing every problem of every file, or a conflict between levels.
    """
    new_path = Path(new_policy)
    if not new_path.is_file():
        raise UsageError(f"policy file {new_path} does not exist")
    candidates: list[tuple[Path, FileLevel]] = []
    ai_candidates: list[Path] = []
    overlay_candidates: list[Path] = []
    if not alone:
        global_file = Path(global_path) if global_path is not None else default_global_policy_path()
        if global_file.is_file():
            candidates.append((global_file, "global"))
        if project_dir is not None:
            ai_dir = Path(project_dir) / ".ai" / "policies" / "ai"
            ai_candidates = sorted(ai_dir.glob("*.yaml")) if ai_dir.is_dir() else []
            overlay_candidates = overlay_files(Path(project_dir))
    candidates.append((new_path, "project"))

    issues: list[PolicyIssue] = []
    files: list[PolicyFile] = []
    for path, _level in candidates:
        policy, found = load_model_file(path, PolicyFile)
        issues += found
        if policy is not None:
            files.append(policy)
    ai_files = load_ai_files(ai_candidates, issues)
    overlays = load_overlays(overlay_candidates, issues)
    if issues:
        raise issues_error(", ".join(sorted({i.file for i in issues})), issues)
    levels = [level for _, level in candidates]
    return merge_policies(files, ai_files=ai_files, levels=levels, overlays=overlays)


def parse_when(text: str, *, now: float | None = None) -> float:
    """A point in time as a Unix timestamp: ISO 8601 (naive means UTC), or a duration ago: 30m, 2h, 7d, 1w, 45s."""
    found = _DURATION.match(text)
    if found:
        now = time.time() if now is None else now
        return now - float(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"cannot read the time {text!r}",
            hint="give an ISO 8601 time (2025-01-31T14:00:00Z) or a duration ago (30m, 2h, 7d)",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
