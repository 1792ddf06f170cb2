"""Evidence: content-addressed blobs (sha256) referenced from the audit log.

Blobs live under `<home>/evidence/sha256/ab/<digest>` for SQLite projects and
in the `evidence_blobs` table for PostgreSQL deployments (several machines
share the database, not a disk). Text evidence is redacted before it is
hashed, so a secret never reaches the store. Evidence written for a task
presents the lease (owner, epoch) like every other task write; its digest
goes into a hash-chained event, so a swapped blob is detected on read, and an
evidence row whose digest, task or kind was edited fails verification (the event
names the row: ``evidence_id``; events written before it are matched by content).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, field_serializer

from aictl.audit.events import append_event, canonical_json
from aictl.domain.errors import AictlError, NotFound, UsageError
from aictl.domain.models import ts_to_dt
from aictl.domain.redact import redact, redact_text
from aictl.store.base import Store, Tx

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-ndjson")


class EvidenceRef(BaseModel):
    id: int
    task_id: int | None
    lease_epoch: int | None
    kind: str  # diff, test_report, transcript, log, usage, …
    name: str
    digest: str
    size: int
    media_type: str
    summary: dict[str, Any] | None = None
    created_at: float
    verified: bool = True  # False: the row no longer matches the audit event that recorded it

    @field_serializer("created_at")
    def _iso(self, v: float) -> str:
        return ts_to_dt(v).isoformat(timespec="milliseconds")


class EvidenceTampered(AictlError):
    code = "evidence_tampered"


class Fence(Protocol):
    """The task plane's lease check (aictl.tasks.fence.check_fence), passed in: audit sits below tasks."""

    def __call__(self, tx: Tx, task_id: int, owner: str, epoch: int, *, verb: str, transition: bool = ...) -> Any: ...


class EvidenceStore:
    def __init__(self, store: Store, home: Path | None, *, actor: str = "aictl", fence: Fence | None = None):
        self.store = store
        self.home = home
        self.actor = actor
        self.fence = fence  # without it, evidence cannot be written for a task (only read, or task-less)
        if store.dialect == "sqlite" and home is None:
            raise UsageError("a SQLite store keeps evidence files under its project home; none is set")

    # -- writing ---------------------------------------------------------------

    def put(
        self,
        content: bytes | str,
        *,
        kind: str,
        name: str,
        media_type: str = "text/plain",
        task_id: int | None = None,
        owner: str | None = None,
        lease_epoch: int | None = None,
        summary: dict[str, Any] | None = None,
        tx: Tx | None = None,
    ) -> EvidenceRef:
        """Store content (redacted if text) and record it; for a task, (owner, epoch) must hold its lease."""
        data = content.encode("utf-8") if isinstance(content, str) else content
        if media_type.startswith(TEXT_TYPES):
            data = redact_text(data.decode("utf-8", errors="replace")).encode("utf-8")
        if kind == "test_report" and summary is None and media_type == "application/xml":
            summary = parse_junit(data)
        digest = hashlib.sha256(data).hexdigest()
        if tx is not None:
            return self._record(tx, data, digest, kind, name, media_type, task_id, owner, lease_epoch, summary)
        with self.store.write() as wtx:
            return self._record(wtx, data, digest, kind, name, media_type, task_id, owner, lease_epoch, summary)

    def _record(
        self,
        tx: Tx,
        data: bytes,
        digest: str,
        kind: str,
        name: str,
        media_type: str,
        task_id: int | None,
        owner: str | None,
        epoch: int | None,
        summary: dict | None,
    ) -> EvidenceRef:
        now = time.time()
        if task_id is not None:
            self._check_lease(tx, task_id, owner, epoch)
        self._write_blob(tx, digest, data)
        summary = redact(summary) if summary else None
        row = tx.row(
            "INSERT INTO evidence (task_id, lease_epoch, kind, name, digest, size, media_type, summary, created_at)"
            " VALUES (:t, :e, :k, :n, :d, :s, :m, :sum, :now) RETURNING *",
            {
                "t": task_id,
                "e": epoch,
                "k": kind,
                "n": name,
                "d": digest,
                "s": len(data),
                "m": media_type,
                "sum": None if summary is None else canonical_json(summary),
                "now": now,
            },
        )
        assert row is not None  # INSERT … RETURNING always returns the row
        append_event(
            tx,
            ts=now,
            actor=owner or self.actor,
            action="evidence",
            task_id=task_id,
            lease_epoch=epoch,
            data={
                "evidence_id": row["id"],
                "kind": kind,
                "name": name,
                "digest": digest,
                "size": len(data),
                **({"summary": summary} if summary else {}),
            },
        )
        return _ref(row)

    def _check_lease(self, tx: Tx, task_id: int, owner: str | None, epoch: int | None) -> None:
        """Evidence is fenced like completion: the presented lease must still hold the task."""
        if self.fence is None:
            raise UsageError(
                "this evidence store was opened without the task plane's lease check",
                hint="pass fence=aictl.tasks.fence.check_fence to EvidenceStore",
            )
        if owner is None or epoch is None:
            raise UsageError("evidence for a task must present the lease: owner and epoch")
        self.fence(tx, task_id, owner, epoch, verb="attach evidence to", transition=False)

    def _write_blob(self, tx: Tx, digest: str, data: bytes) -> None:
        if tx.dialect == "postgresql":
            tx.run(
                "INSERT INTO evidence_blobs (digest, content) VALUES (:d, :c) ON CONFLICT DO NOTHING",
                {"d": digest, "c": data},
            )
            return
        path = self._path(digest)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written blob under its digest

    def _path(self, digest: str) -> Path:
        assert self.home is not None
        return self.home / "evidence" / "sha256" / digest[:2] / digest

    # -- reading -----------------------------------------------------------------

    def get(self, digest: str) -> bytes:
        """The blob, checked against its digest (a swapped or edited file is reported, not returned)."""
        if len(digest) < 6 or any(c not in "0123456789abcdef" for c in digest):
            raise UsageError(f"not a sha256 digest (or prefix of one): {digest!r}")
        with self.store.read() as tx:
            rows = tx.all("SELECT DISTINCT digest FROM evidence WHERE digest LIKE :p", {"p": digest + "%"})
            if not rows:
                raise NotFound(
                    f"no evidence with digest {digest}", hint="list a task's evidence: aictl task evidence ID"
                )
            if len(rows) > 1:
                raise UsageError(f"digest prefix {digest} is ambiguous ({len(rows)} matches); give more characters")
            full = rows[0]["digest"]
            if tx.dialect == "postgresql":
                row = tx.one("SELECT content FROM evidence_blobs WHERE digest = :d", {"d": full})
                data = bytes(row["content"]) if row else None
            else:
                path = self._path(full)
                data = path.read_bytes() if path.exists() else None
        if data is None:
            raise EvidenceTampered(f"evidence {full[:16]}… is recorded but its content is gone")
        if hashlib.sha256(data).hexdigest() != full:
            raise EvidenceTampered(f"evidence {full[:16]}… was modified: its content no longer matches its digest")
        return data

    def contents(self, digests: list[str]) -> dict[str, bytes | None]:
        """Many blobs by full digest in one read (reports); a missing or altered one comes back as None."""
        out: dict[str, bytes | None] = dict.fromkeys(digests)
        # only well-formed digests name a file: a row edited to hold a path never leaves the blob folder
        wanted = sorted(d for d in out if len(d) == 64 and all(c in "0123456789abcdef" for c in d))
        if self.store.dialect == "postgresql":
            with self.store.read() as tx:
                for i in range(0, len(wanted), 500):
                    chunk = wanted[i : i + 500]
                    marks = ", ".join(f":d{j}" for j in range(len(chunk)))
                    for row in tx.all(
                        f"SELECT digest, content FROM evidence_blobs WHERE digest IN ({marks})",
                        {f"d{j}": d for j, d in enumerate(chunk)},
                    ):
                        out[row["digest"]] = bytes(row["content"])
        else:
            for digest in wanted:
                path = self._path(digest)
                out[digest] = path.read_bytes() if path.is_file() else None
        return {d: (b if b is not None and hashlib.sha256(b).hexdigest() == d else None) for d, b in out.items()}

    def list(self, task_id: int) -> list[EvidenceRef]:
        """A task's evidence; a row that does not match its audit event comes back with verified=False."""
        with self.store.read() as tx:
            rows = tx.all("SELECT * FROM evidence WHERE task_id = :t ORDER BY id", {"t": task_id})
            events = tx.all(
                "SELECT id, task_id, lease_epoch, data FROM events WHERE action = 'evidence'"
                " AND task_id = :t ORDER BY id",
                {"t": task_id},
            )
        _, unmatched = _match(rows, [{**e, "data": json.loads(e["data"]) if e["data"] else {}} for e in events])
        bad = {r["id"] for r in unmatched}
        return [_ref(r).model_copy(update={"verified": r["id"] not in bad}) for r in rows]


_VOUCHED = ("task_id", "lease_epoch", "kind", "digest", "size")


def _key(task_id: Any, epoch: Any, data: dict[str, Any]) -> tuple:
    return (task_id, epoch, data.get("kind"), data.get("digest"), data.get("size"))


def _match(
    rows: list[dict[str, Any]], events: list[dict[str, Any]]
) -> tuple[tuple[int | None, str] | None, list[dict[str, Any]]]:
    """Pair evidence rows with their events: (first event whose row is gone or changed, rows no event vouches for)."""
    by_id = {r["id"]: r for r in rows}
    first: tuple[int | None, str] | None = None
    unmatched: list[dict[str, Any]] = []
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for ev in events:
        rid = ev["data"].get("evidence_id")
        if rid is None:  # written before events named their row: match by content below
            by_key.setdefault(_key(ev["task_id"], ev["lease_epoch"], ev["data"]), []).append(ev)
            continue
        row = by_id.get(rid)
        want = _key(ev["task_id"], ev["lease_epoch"], ev["data"])
        if row is None or tuple(row[k] for k in _VOUCHED) != want:
            if row is not None:
                unmatched.append(by_id.pop(rid))
            if first is None:
                what = "is missing" if row is None else "was modified (digest, task or kind differ from the event)"
                first = (ev["id"], f"evidence row {rid} recorded by event {ev['id']} {what}")
            continue
        del by_id[rid]
    for row in by_id.values():
        waiting = by_key.get(tuple(row[k] for k in _VOUCHED))
        if waiting:
            waiting.pop()
        else:
            unmatched.append(row)
    return first, unmatched


def vouch_evidence(tx: Tx, events: list[dict[str, Any]]) -> tuple[int | None, str] | None:
    """The chain's voucher for the evidence table (see aictl.audit.chain)."""
    first, unmatched = _match(tx.all("SELECT * FROM evidence ORDER BY id"), events)
    if first is None and unmatched:
        r = unmatched[0]
        first = (
            None,
            f"evidence row {r['id']} (task {r['task_id']}, {r['kind']} {r['name']}) matches no audit event:"
            " it was inserted or edited outside aictl",
        )
    return first


def evidence_by_kind(tx: Tx, task_id: int, epoch: int) -> dict[str, list[dict[str, Any]]]:
    """Evidence of one attempt by kind, with summaries (for completion requirements)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in tx.all(
        "SELECT kind, summary FROM evidence WHERE task_id = :t AND lease_epoch = :e", {"t": task_id, "e": epoch}
    ):
        out.setdefault(r["kind"], []).append(json.loads(r["summary"]) if r["summary"] else {})
    return out


def _ref(row: dict[str, Any]) -> EvidenceRef:
    return EvidenceRef(**{**row, "summary": json.loads(row["summary"]) if row["summary"] else None})


def parse_junit(data: bytes) -> dict[str, Any]:
    """Counts from a JUnit XML report (pytest --junitxml, surefire, …); never raises."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        return {"parse_error": str(e)}
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in suites:
        for k in totals:
            try:
                totals[k] += int(s.get(k, 0) or 0)
            except ValueError:
                pass
    totals["passed"] = totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"]
    totals["ok"] = totals["tests"] > 0 and totals["failures"] == 0 and totals["errors"] == 0
    return totals
