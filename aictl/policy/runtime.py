"""The policy in force for one run: every agent action (read, write, delete, command, connection, tool) decided.

`RunPolicy.pin` loads the effective policy once, when the run starts, from the main project dir and
the state dir (never from the agent's worktree) and fingerprints it; nothing the agent does while it
runs changes the decisions of its run. `decide` normalizes the resource (repo-relative POSIX paths;
a path that leaves the repository is denied without asking the rules), evaluates it with the task, AI
and epoch, and writes the Decision Record with its audit event in one transaction before it answers.

A require_approval the run met before is granted for the task's next attempt once a person approved
it (`task approve`): `pin` reads those grants, and `decide` turns exactly that action into an allow.
"""

from __future__ import annotations

import json
import os
import posixpath
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from aictl.policy.gate import GateDecision, GateRequest, GateResource, GateSubject, PolicyGate, load_gate
from aictl.policy.records import DecisionRecord, make_record, write_record

if TYPE_CHECKING:
    from aictl.config import Settings
    from aictl.domain.models import AIRecord
    from aictl.store.base import Store

RUNTIME_ACTIONS = ("read_path", "write_path", "delete_path", "run_command", "network", "use_tool")
PATH_ACTIONS = ("read_path", "write_path", "delete_path")
OUTSIDE_RULE = "outside-repository"  # not a policy rule: the path check before any rule is asked
_GRANT_EPOCHS = 1  # an approval grants its action for this many attempts after it


@dataclass(frozen=True)
class ActionVerdict:
    effect: str  # "allow" | "deny" | "require_approval"
    rule: str | None  # the deciding rule's id, if any
    reason: str  # names the rule and why: what a refused tool call returns to the model
    decision_id: str | None

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"


def action_key(action: str, resource: dict[str, Any]) -> str:
    """One action and its resource as a stable string: how a pending approval names what it grants."""
    return json.dumps([action, {k: v for k, v in sorted(resource.items()) if v is not None}], sort_keys=True)


class RunPolicy:
    """The policy in force for one run: loaded and fingerprinted once (at claim/execute time); nothing the agent
    does in its worktree changes it. Thread-safe (a hook server thread may call decide concurrently)."""

    fingerprint: str

    def __init__(
        self,
        gate: PolicyGate,
        *,
        open_store: Callable[[], Store],
        task: dict[str, Any],
        ai: AIRecord | None,
        epoch: int,
        actor: str | None = None,
        roots: tuple[str | Path, ...] = (),
        grants: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
    ):
        self.gate = gate
        self.fingerprint = gate.digest
        self.task = dict(task)
        self.task_id: int | None = task.get("id")
        self.ai_id = ai.id if ai is not None else None
        self.ai_labels = list(ai.labels or []) if ai is not None else []
        self.actor = actor or self.ai_id
        self.epoch = epoch
        self.grants = grants
        self.clock = clock
        self._roots: tuple[PurePosixPath, ...] = ()
        self.bind_roots(*roots)
        self._open_store = open_store
        self._local = threading.local()  # a connection per calling thread (SQLite's are bound to theirs)
        self._stores: list[Store] = []
        self._lock = threading.Lock()
        self.decided = 0  # decisions recorded by this run, for its evidence

    @classmethod
    def pin(
        cls,
        *,
        store: Store,
        settings: Settings,
        task_row: dict[str, Any],
        ai: AIRecord | None,
        epoch: int,
        actor: str | None = None,
        gate: PolicyGate | None = None,
        roots: tuple[str | Path, ...] = (),
        open_store: Callable[[], Store] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> RunPolicy:
        """The run's policy. `task_row`: the task as the policy sees it (tasks.txn.task_facts of its row).

        `gate`: the policy the run was claimed under (the executor's, loaded before the workspace
        existed); else it is loaded now from the project dir and state dir. No policy file: deny-all.
        """
        if gate is None:
            if settings.project_dir is None:
                from aictl.domain.errors import UsageError

                raise UsageError("a run's policy needs a project (a git repository with .ai/)", hint="aictl init")
            gate = load_gate(settings.project_dir, state_dir=settings.home)
        if open_store is None:
            from aictl.store import open_store as open_url

            url, busy = settings.resolved_database_url, settings.busy_timeout_ms
            open_store = lambda: open_url(url, busy_timeout_ms=busy)  # noqa: E731 - bound once per run
        grants = _grants(store, task_row.get("id"), epoch)
        return cls(
            gate,
            open_store=open_store,
            task=task_row,
            ai=ai,
            epoch=epoch,
            actor=actor,
            roots=roots,
            grants=grants,
            clock=clock,
        )

    def bind_roots(self, *roots: str | Path) -> None:
        """Where the repository is seen (the worktree on the host, its mount in a container): absolute
        paths under one of them are made repo-relative; any other absolute path is outside."""
        found = list(self._roots)
        for root in roots:
            for form in {str(root), os.path.realpath(root)}:
                p = PurePosixPath(form)
                if p.is_absolute() and p not in found:
                    found.append(p)
        self._roots = tuple(found)

    # -- deciding ------------------------------------------------------------------------------------

    def decide(
        self,
        action: str,
        *,
        path: str | None = None,
        command: str | None = None,
        host: str | None = None,
        port: int | None = None,
        tool: str | None = None,
    ) -> ActionVerdict:
        if action not in RUNTIME_ACTIONS:
            raise ValueError(f"unknown run-time action {action!r}; known: {', '.join(RUNTIME_ACTIONS)}")
        extra: dict[str, Any] = {}
        if host is not None:
            extra["host"] = host.strip().lower().rstrip(".")
        if port is not None:
            extra["port"] = int(port)
        context = {"tool": tool} if tool is not None else {}
        rel: str | None = None
        refusal: str | None = None
        if path is not None:
            rel, refusal = self.normalize(path)
        request = GateRequest(
            subject=GateSubject(
                ai=self.ai_id,
                ai_labels=list(self.ai_labels),
                task_id=self.task_id,
                lease_epoch=self.epoch,
                actor=self.actor,
            ),
            action=action,
            resource=GateResource(task=self.task, path=rel if rel is not None else path, command=command, extra=extra),
            context=context,
        )
        if refusal is not None:
            decision = GateDecision("deny", [], [refusal], None, False)
        else:
            decision = self.gate.evaluate(request)
        granted = None
        if decision.effect == "require_approval":
            key = action_key(action, {"path": rel, "command": command, "tool": tool, **extra})
            if key in self.grants:
                granted = "approved by a person for this attempt (task approve)"
                decision.effect = "allow"
                decision.reasons = [*decision.reasons, granted]
        record = make_record(request, decision, self.gate.sources, ts=self.clock())
        self._write(record)
        rule = OUTSIDE_RULE if refusal is not None else _deciding_rule(self.gate, self.ai_id, decision)
        return ActionVerdict(
            decision.effect, rule, _reason(action, rel or path, command, decision, rule), record.decision_id
        )

    def normalize(self, path: str) -> tuple[str | None, str | None]:
        """(the repo-relative POSIX path, None), or (None, why it is refused): outside the repository."""
        if "\x00" in path:
            return None, f"{path!r}: a path may not contain a NUL byte"
        raw = path.strip().replace("\\", "/")
        p = PurePosixPath(raw)
        if p.is_absolute():
            for root in self._roots:
                if p == root or root in p.parents:
                    raw = p.relative_to(root).as_posix()
                    break
            else:
                return None, f"{path}: outside the repository (only paths inside the task's worktree are allowed)"
        rel = posixpath.normpath(raw)
        if rel == ".." or rel.startswith("../") or rel.startswith("/"):
            return None, f"{path}: outside the repository ('..' leaves the task's worktree)"
        return ("." if rel in ("", ".") else rel), None

    # -- recording -----------------------------------------------------------------------------------

    def _write(self, record: DecisionRecord) -> None:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = self._open_store()
            with self._lock:
                self._stores.append(store)
        with store.write() as tx:
            write_record(tx, record)
        with self._lock:
            self.decided += 1

    def close(self) -> None:
        """Close the run's connections (the executor calls it when the run ends; each thread's own)."""
        with self._lock:
            stores, self._stores = self._stores, []
        self._local = threading.local()
        for store in stores:
            try:
                store.close()
            except Exception:  # noqa: BLE001 - another thread's SQLite connection may refuse; the GC closes it
                pass


def _deciding_rule(gate: PolicyGate, ai: str | None, decision: GateDecision) -> str | None:
    """The first matched rule whose effect is the decision's (the one a refusal names)."""
    if not decision.matched_rules:
        return None
    effects = {r.id: r.effect.value for r in gate.policy.resolve(ai).rules}
    for rule_id in decision.matched_rules:
        if effects.get(rule_id) == decision.effect:
            return rule_id
    return decision.matched_rules[0]


def _reason(action: str, path: str | None, command: str | None, decision: GateDecision, rule: str | None) -> str:
    what = f"{action} {path}" if path is not None else f"{action} {command!r}" if command is not None else action
    why = "; ".join(decision.reasons) or decision.effect
    verdict = {"allow": "allowed", "deny": "denied", "require_approval": "needs a person's approval"}[decision.effect]
    by = f"rule {rule}" if rule is not None else ("the default" if decision.default_applied else "the policy")
    return f"policy: {what} is {verdict} by {by}: {why}"


def _grants(store: Store, task_id: int | None, epoch: int) -> frozenset[str]:
    """Run-time actions a person approved for this task's next attempt: each require_approval a run of the
    task recorded before the latest `approve`, and after the verdict before it; void once an attempt ran."""
    if task_id is None:
        return frozenset()
    with store.read() as tx:
        verdicts = tx.all(
            "SELECT action, ts FROM events WHERE task_id = :t AND action IN ('approve', 'reject')"
            " ORDER BY id DESC LIMIT 2",
            {"t": task_id},
        )
        if not verdicts or verdicts[0]["action"] != "approve":
            return frozenset()
        approved_at = float(verdicts[0]["ts"])
        since = float(verdicts[1]["ts"]) if len(verdicts) > 1 else 0.0
        started = tx.one(
            "SELECT COUNT(*) AS n FROM events WHERE task_id = :t AND action = 'start' AND ts > :a",
            {"t": task_id, "a": approved_at},
        )
        if started is not None and int(started["n"]) >= _GRANT_EPOCHS:
            return frozenset()
        rows = tx.all(
            "SELECT action, resource, input FROM decisions WHERE task_id = :t AND effect = 'require_approval'"
            " AND ts >= :s AND ts <= :a AND lease_epoch < :e",
            {"t": task_id, "s": since, "a": approved_at, "e": epoch},
        )
    grants = set()
    for row in rows:
        if row["action"] not in RUNTIME_ACTIONS:
            continue
        resource = json.loads(row["resource"])
        context = json.loads(row["input"]).get("context") or {}
        grants.add(
            action_key(
                row["action"],
                {
                    "path": resource.get("path"),
                    "command": resource.get("command"),
                    "tool": context.get("tool"),
                    **(resource.get("extra") or {}),
                },
            )
        )
    return frozenset(grants)


__all__ = ["PATH_ACTIONS", "RUNTIME_ACTIONS", "ActionVerdict", "RunPolicy", "action_key"]
