"""Policy Decision Records: every enforced decision, stored, queryable, replayable.

A record holds who asked (subject), what (action, resource), the whole input
with secrets masked, the effect, the matched rule ids, reasons, limits, the
policy files with their content hashes, and how long evaluation took. Each
record also appends a `decision` event whose data carries the record's sha256,
so the hash-chained audit log vouches for the decision table too: `vouch_decisions`
is the chain verifier's check of every record, and `DecisionLog.get` refuses to
show a record whose content no longer matches the hash its event carries.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import field
from typing import Any

from aictl.audit.events import append_event, canonical_json
from aictl.domain.errors import AictlError, NotFound, UsageError
from aictl.domain.models import Record
from aictl.domain.redact import redact
from aictl.store.base import Store, Tx


class DecisionRecord(Record):
    """A plain record (built on every enforced action, so no pydantic); `ts` dumps as ISO-8601 like the model did."""

    _timestamps = ("ts",)

    decision_id: str
    ts: float
    action: str
    input: dict[str, Any]
    effect: str
    eval_ms: float
    ai: str | None = None
    actor: str | None = None
    task_id: int | None = None
    lease_epoch: int | None = None
    resource: dict[str, Any] = field(default_factory=dict)
    matched_rules: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    policy_digest: str = ""
    enforced: bool = True

    def digest(self) -> str:
        return hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode()).hexdigest()


def policy_digest(sources: list[dict[str, Any]]) -> str:
    """One hash for the exact set of policy files a decision was made under."""
    return hashlib.sha256(canonical_json(sorted(f"{s['path']}:{s['sha256']}" for s in sources)).encode()).hexdigest()


def make_record(
    request: Any,
    decision: Any,
    sources: list[dict[str, Any]],
    *,
    enforced: bool = True,
    ts: float | None = None,
    dumped: dict[str, Any] | None = None,
    digest: str | None = None,
) -> DecisionRecord:
    """A record from a PolicyRequest and the engine's Decision, or the fast gate's plain request and
    verdict whose limits are a dict (input masked before it is stored).

    `dumped`: the request's JSON dump, already masked, and `digest`: policy_digest(sources), from a
    caller that decides many times under one policy (aictl.policy.runtime)."""
    req = dumped if dumped is not None else redact(request.model_dump(mode="json"))
    limits = decision.limits
    if limits is None:
        limits = {}
    elif isinstance(limits, dict):  # as resolve.merged_limit_values gives them: the dump without Nones
        limits = {k: _without_none(v) for k, v in limits.items() if v is not None}
    else:
        limits = limits.model_dump(mode="json", exclude_none=True)
    return DecisionRecord(
        decision_id=uuid.uuid4().hex,
        ts=time.time() if ts is None else ts,
        ai=request.subject.ai,
        actor=request.subject.actor,
        task_id=request.subject.task_id,
        lease_epoch=request.subject.lease_epoch,
        action=request.action,
        resource=req.get("resource", {}),
        input=req,
        effect=decision.effect,
        matched_rules=list(decision.matched_rules),
        reasons=list(decision.reasons),
        limits={k: v for k, v in limits.items() if v not in (None, [], {})},
        sources=sources,
        policy_digest=digest if digest is not None else policy_digest(sources),
        eval_ms=round(decision.eval_ms, 4),
        enforced=enforced,
    )


def _without_none(value: Any) -> Any:
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


def write_record(tx: Tx, record: DecisionRecord) -> None:
    tx.run(
        "INSERT INTO decisions (decision_id, ts, ai, actor, task_id, lease_epoch, action, resource, input, effect,"
        " matched_rules, reasons, limits, sources, policy_digest, eval_ms, enforced)"
        " VALUES (:decision_id, :ts, :ai, :actor, :task_id, :lease_epoch, :action, :resource, :input, :effect,"
        " :matched_rules, :reasons, :limits, :sources, :policy_digest, :eval_ms, :enforced)",
        {
            **{
                k: getattr(record, k)
                for k in (
                    "decision_id",
                    "ts",
                    "ai",
                    "actor",
                    "task_id",
                    "lease_epoch",
                    "action",
                    "effect",
                    "policy_digest",
                    "eval_ms",
                )
            },
            "resource": canonical_json(record.resource),
            "input": canonical_json(record.input),
            "matched_rules": canonical_json(record.matched_rules),
            "reasons": canonical_json(record.reasons),
            "limits": canonical_json(record.limits),
            "sources": canonical_json(record.sources),
            "enforced": int(record.enforced),
        },
    )
    append_event(
        tx,
        ts=record.ts,
        actor=record.actor or record.ai or "aictl",
        action="decision",
        task_id=record.task_id,
        lease_epoch=record.lease_epoch,
        data={
            "decision_id": record.decision_id,
            "policy_action": record.action,
            "effect": record.effect,
            "rules": record.matched_rules,
            "sha256": record.digest(),
        },
    )


def _from_row(row: dict[str, Any]) -> DecisionRecord:
    data = dict(row)
    for k in ("resource", "input", "matched_rules", "reasons", "limits", "sources"):
        data[k] = json.loads(data[k])
    data["enforced"] = bool(data["enforced"])
    data["ts"], data["eval_ms"] = float(data["ts"]), float(data["eval_ms"])  # PostgreSQL may give Decimal
    return DecisionRecord(**{k: data[k] for k in DecisionRecord.model_fields if k in data})


class RecordTampered(AictlError):
    code = "record_tampered"


def _mismatch(row: dict[str, Any] | None, event: dict[str, Any]) -> str | None:
    """Why a stored record does not match the decision event that vouches for it (None: it matches)."""
    did = event["data"].get("decision_id")
    if row is None:
        return f"decision {did} recorded by event {event['id']} is missing from the decisions table"
    try:
        digest = _from_row(row).digest()
    except (ValueError, TypeError):
        digest = None
    if digest != event["data"].get("sha256"):
        return f"decision {did} was modified: its stored record no longer matches the sha256 in event {event['id']}"
    return None


def vouch_decisions(tx: Tx, events: list[dict[str, Any]]) -> tuple[int | None, str] | None:
    """The audit chain's voucher for the decisions table (aictl.audit.chain.verify(vouchers=...))."""
    rows = {r["decision_id"]: r for r in tx.all("SELECT * FROM decisions")}
    for ev in events:
        why = _mismatch(rows.pop(ev["data"].get("decision_id"), None), ev)
        if why:
            return ev["id"], why
    if rows:
        did = min(rows, key=lambda d: rows[d]["ts"])
        return None, f"decision {did} matches no audit event: it was inserted outside aictl"
    return None


class DecisionLog:
    """Read decision records back."""

    def __init__(self, store: Store):
        self.store = store

    def get(self, decision_id: str) -> DecisionRecord:
        with self.store.read() as tx:
            rows = tx.all(
                "SELECT * FROM decisions WHERE substr(decision_id, 1, :n) = :p",
                {"n": len(decision_id), "p": decision_id},
            )
        if not rows:
            raise NotFound(f"decision {decision_id} not found", hint="list decisions with: aictl audit decisions")
        if len(rows) > 1:
            raise UsageError(f"decision id prefix {decision_id} is ambiguous; give more characters")
        full = rows[0]["decision_id"]
        with self.store.read() as tx:
            # canonical JSON (sorted keys, no spaces) makes the id's key/value pair an exact substring
            ev = tx.one(
                "SELECT id, data FROM events WHERE action = 'decision' AND data LIKE :p ORDER BY id LIMIT 1",
                {"p": f'%"decision_id":"{full}"%'},
            )
        why = (
            f"decision {full} matches no audit event: it was inserted outside aictl"
            if ev is None
            else _mismatch(rows[0], {**ev, "data": json.loads(ev["data"])})
        )
        if why:
            raise RecordTampered(
                f"decision record fails verification: {why}", hint="check the whole log: aictl audit verify"
            )
        return _from_row(rows[0])

    def list(
        self,
        *,
        task_id: int | None = None,
        ai: str | None = None,
        effect: str | None = None,
        action: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[DecisionRecord]:
        where, params = ["1 = 1"], dict[str, Any]()
        for col, val in (("task_id", task_id), ("ai", ai), ("effect", effect), ("action", action)):
            if val is not None:
                where.append(f"{col} = :{col}")
                params[col] = val
        if since is not None:
            where.append("ts >= :since")
            params["since"] = since
        sql = f"SELECT * FROM decisions WHERE {' AND '.join(where)} ORDER BY ts, decision_id"
        if limit:
            inner = sql.replace(" ORDER BY ts, decision_id", "")
            sql = f"SELECT * FROM ({inner} ORDER BY ts DESC LIMIT {int(limit)}) d ORDER BY ts"
        with self.store.read() as tx:
            return [_from_row(r) for r in tx.all(sql, params)]
