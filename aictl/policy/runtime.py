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

from aictl.domain.redact import redact
from aictl.policy.commands import parse_command
from aictl.policy.gate import (
    GateDecision,
    GateRequest,
    GateResource,
    GateSubject,
    PolicyGate,
    jsonable,
    load_gate,
)
from aictl.policy.records import DecisionRecord, make_record, write_record
from aictl.policy.runscan import scan_words

if TYPE_CHECKING:
    from aictl.config import Settings
    from aictl.domain.models import AIRecord
    from aictl.store.base import Store

RUNTIME_ACTIONS = ("read_path", "write_path", "delete_path", "run_command", "network", "use_tool")
PATH_ACTIONS = ("read_path", "write_path", "delete_path")
MCP_PREFIX = "mcp__"  # an MCP tool's name: mcp__<server>__<tool> (aictl.agents.connectors.mcptools)
# Checks aictl makes itself, named like the result checks' rules (aictl.execution.checks):
OUTSIDE_RULE = "aictl:outside-repository"  # a path that leaves the worktree, refused before any rule is asked
LOCKS_RULE = "aictl:locks"  # a write outside the task's lock globs
WORKTREE_RULE = "aictl:worktree"  # a command naming the project or state dir from outside the worktree
GRANTED = "approved by a person for this attempt (task approve)"
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
        writable: Callable[[str], bool] | None = None,
        protected: tuple[str | Path, ...] = (),
    ):
        self.gate = gate
        self.writable = writable  # the task's locks: may this repo-relative path be written? None: no lock check
        self.protected = tuple(os.path.realpath(p) for p in protected)
        self.fingerprint = gate.digest
        self.task = dict(task)
        self.task_id: int | None = task.get("id")
        self.ai_id = ai.id if ai is not None else actor  # no AI (the command connector): the owner, as `execute` asks
        self.ai_labels = list(ai.labels or []) if ai is not None else []
        self.actor = actor or self.ai_id
        self.epoch = epoch
        self.grants = grants
        self.clock = clock
        self._roots: tuple[PurePosixPath, ...] = ()
        self.bind_roots(*roots)
        self._open_store = open_store
        # Constant for the run: the rules' effects (naming the deciding rule), the masked subject and task.
        rules = gate.policy.resolve(self.ai_id).rules
        self._effects = {r.id: r.effect.value for r in rules if not r.limits_only}
        self._subject_dump = redact(
            {
                "ai": self.ai_id,
                "ai_labels": list(self.ai_labels),
                "task_id": self.task_id,
                "lease_epoch": epoch,
                "actor": self.actor,
            }
        )
        self._task_dump = redact(jsonable(self.task))
        self._writer: _Writer | None = None  # one connection on one thread, whoever decides (SQLite binds them)
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
        writable: Callable[[str], bool] | None = None,
    ) -> RunPolicy:
        """The run's policy. `task_row`: the task as the policy sees it (tasks.txn.task_facts of its row).

        `gate`: the policy the run was claimed under (the executor's, loaded before the workspace
        existed); else it is loaded now from the project dir and state dir. No policy file: deny-all.
        `writable`: the task's lock check for writes and deletes. Commands may not name the project
        dir, the state dir or the global policy from outside the worktree.
        """
        if gate is None:
            if settings.project_dir is None:
                from aictl.domain.errors import UsageError

                raise UsageError("a run's policy needs a project (a git repository with .ai/)", hint="aictl init")
            gate = load_gate(settings.project_dir, state_dir=settings.home)
        if open_store is None:
            from aictl.store import open_store as open_url

            url, busy = settings.resolved_database_url, settings.busy_timeout_ms
            open_store = lambda: open_url(url, busy_timeout_ms=busy, migrate=False)  # noqa: E731 - `store` is migrated
        grants = _grants(store, task_row.get("id"), epoch)
        from aictl.policy.sources import default_global_policy_path

        protected = tuple(
            p for p in (settings.project_dir, settings.home, default_global_policy_path().parent) if p is not None
        )
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
            writable=writable,
            protected=protected,
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
        allowed_by: str | None = None,
    ) -> ActionVerdict:
        """Decide one agent action and record it (PDR + audit event, one transaction) before answering.

        `allowed_by`: an action aictl itself allows, by that built-in rule (the AI's own API through the egress
        proxy): not put to the policy, but recorded all the same."""
        if action not in RUNTIME_ACTIONS:
            raise ValueError(f"unknown run-time action {action!r}; known: {', '.join(RUNTIME_ACTIONS)}")
        extra: dict[str, Any] = {}
        if host is not None:
            extra["host"] = host.strip().lower().rstrip(".")
        if port is not None:
            extra["port"] = int(port)
        context: dict[str, Any] = {"tool": tool} if tool is not None else {}
        if tool is not None and tool.startswith(MCP_PREFIX) and "__" in tool[len(MCP_PREFIX) :]:
            server, _, name = tool[len(MCP_PREFIX) :].partition("__")  # mcp__<server>__<tool>, as rules see MCP calls
            context.update(mcp_server=server, mcp_tool=name)
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
            decision = GateDecision("deny", [OUTSIDE_RULE], [refusal], None, False)
        elif allowed_by is not None:
            decision = GateDecision(
                "allow", [allowed_by], ["the AI's own API, reachable by every run of it"], None, False
            )
        else:
            decision = self.gate.evaluate(request)
            if decision.effect != "deny" and rel is not None and self._outside_locks(action, rel):
                locks = ", ".join(self.task.get("lock_paths") or []) or "none"
                why = f"{rel} is outside the task's locks ({locks})"
                decision = GateDecision("deny", [LOCKS_RULE], [why], None, False, decision.eval_ms)
            if action == "run_command" and command is not None and decision.effect != "deny":
                decision = self._command_checks(command, decision)
        if decision.effect == "require_approval":
            key = action_key(action, {"path": rel, "command": command, "tool": tool, **extra})
            if key in self.grants:
                decision.effect = "allow"
                decision.reasons = [*decision.reasons, GRANTED]
        varying = redact({"path": request.resource.path, "command": command, "extra": extra, "context": context})
        dumped = {  # what make_record would dump and mask, with the run's constant parts masked once at pin time
            "subject": self._subject_dump,
            "action": action,
            "resource": {
                "task": self._task_dump,
                "path": varying["path"],
                "paths": [],
                "command": varying["command"],
                "extra": varying["extra"],
            },
            "context": varying["context"],
        }
        record = make_record(
            request, decision, self.gate.sources, ts=self.clock(), dumped=dumped, digest=self.fingerprint
        )
        self._write(record)
        rule = self._deciding_rule(decision)
        return ActionVerdict(
            decision.effect,
            rule,
            _reason(action, _target(rel or path, command, tool, extra), decision, rule),
            record.decision_id,
        )

    def granted(self, action: str, *, path: str | None = None, command: str | None = None) -> bool:
        """A person approved exactly this action for this attempt (the result check honours it too)."""
        rel = self.normalize(path)[0] if path is not None else None
        return action_key(action, {"path": rel, "command": command}) in self.grants

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

    def _command_checks(self, command: str, decision: GateDecision) -> GateDecision:
        """What the command names decides too: a file the policy denies reading (`cat secrets/token.txt`, a
        glob or symlink to it), a path into the project or state dir from outside the worktree
        (`rm ../../policy.yaml`), a URL's host (a `network` decision of its own, on record)."""
        root = self._host_root()
        if root is None:
            return decision
        mounts = tuple(str(r) for r in self._roots if not os.path.isdir(r))
        scan = scan_words(root, parse_command(command).words, protected=self.protected, mounts=mounts)
        if scan.reaching:
            why = f"the command names {scan.reaching[0]}, outside its worktree, in the project or aictl's state"
            return GateDecision("deny", [WORKTREE_RULE], [why], None, False, decision.eval_ms)
        for rel in scan.inside:
            read = self.gate.evaluate(
                GateRequest(
                    subject=GateSubject(
                        ai=self.ai_id, ai_labels=list(self.ai_labels), task_id=self.task_id, lease_epoch=self.epoch
                    ),
                    action="read_path",
                    resource=GateResource(task=self.task, path=rel),
                    context={},
                )
            )
            if read.effect == "deny":
                why = f"the command names {rel}, which the agent may not read: {'; '.join(read.reasons)}"
                return GateDecision("deny", read.matched_rules, [why], None, False, decision.eval_ms + read.eval_ms)
        for host, port in scan.hosts:
            net = self.decide("network", host=host, port=port)
            if not net.allowed:
                why = f"the command connects to {host}{f':{port}' if port else ''}: {net.reason}"
                matched = [net.rule] if net.rule else []
                return GateDecision("deny", matched, [why], None, False, decision.eval_ms)
        return decision

    def _deciding_rule(self, decision: GateDecision) -> str | None:
        """The first matched rule whose effect is the decision's (the one a refusal names)."""
        if not decision.matched_rules or decision.default_applied:
            return None  # no rule decided (a workflow overlay's allow rule only capped the limits)
        for rule_id in decision.matched_rules:
            if self._effects.get(rule_id) == decision.effect:
                return rule_id
        return decision.matched_rules[0]

    def _outside_locks(self, action: str, rel: str) -> bool:
        if action == "read_path" or self.writable is None:
            return False
        return rel == "." or not self.writable(rel)

    def _host_root(self) -> str | None:
        for root in self._roots:
            if os.path.isdir(root):
                return os.path.realpath(root)
        return None

    # -- recording -----------------------------------------------------------------------------------

    def _write(self, record: DecisionRecord) -> None:
        """The record and its event, committed before decide answers (on the run's writer thread)."""
        with self._lock:
            if self._writer is None:
                self._writer = _Writer(self._open_store)
            writer = self._writer
            self.decided += 1
        writer.write(record)

    def close(self) -> None:
        """End the run's writer and close its connection (the executor calls it when the run ends)."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


class _Writer:
    """A thread that owns the run's store connection: decide may be called from any thread (the tool loop,
    a hook server's request threads), and a SQLite connection belongs to the thread that made it."""

    def __init__(self, open_store: Callable[[], Store]):
        import queue

        self._jobs: queue.Queue[tuple[DecisionRecord, list[BaseException | None], threading.Event] | None]
        self._jobs = queue.Queue()
        self._open_store = open_store
        self._thread = threading.Thread(target=self._run, name="aictl-run-policy", daemon=True)
        self._thread.start()

    def write(self, record: DecisionRecord) -> None:
        done, outcome = threading.Event(), list[BaseException | None]([None])
        self._jobs.put((record, outcome, done))
        done.wait()
        if outcome[0] is not None:
            raise outcome[0]

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        store: Store | None = None
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                record, outcome, done = job
                try:
                    if store is None:
                        store = self._open_store()
                    with store.write() as tx:
                        write_record(tx, record)
                except BaseException as e:  # noqa: BLE001 - handed to the caller, whose decision then fails
                    outcome[0] = e
                finally:
                    done.set()
        finally:
            if store is not None:
                store.close()


def _reason(action: str, target: str | None, decision: GateDecision, rule: str | None) -> str:
    what = f"{action} {target}" if target is not None else action
    why = "; ".join(decision.reasons) or decision.effect
    verdict = {"allow": "allowed", "deny": "denied", "require_approval": "needs a person's approval"}[decision.effect]
    by = f"rule {rule}" if rule is not None else ("the default" if decision.default_applied else "the policy")
    return f"policy: {what} is {verdict} by {by}: {why}"


def _target(path: str | None, command: str | None, tool: str | None, extra: dict[str, Any]) -> str | None:
    """The action's resource in a refusal's words: the path, the command line, the tool, host:port."""
    if path is not None:
        return path
    if command is not None:
        return repr(command)
    if tool is not None:
        return tool
    if "host" in extra:
        return f"{extra['host']}:{extra['port']}" if "port" in extra else str(extra["host"])
    return None


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


__all__ = [
    "LOCKS_RULE",
    "OUTSIDE_RULE",
    "PATH_ACTIONS",
    "RUNTIME_ACTIONS",
    "WORKTREE_RULE",
    "ActionVerdict",
    "RunPolicy",
    "action_key",
]
