"""The task-scoped tools' work: one task, one lease epoch, one owner. Every call first checks the lease is still
this attempt's; once it is not (fenced: reaped, released, reclaimed) the tools answer only "lease lost".

No `mcp` import here (see ops.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aictl.domain.errors import AictlError, LeaseLost, PolicyDenied, UsageError
from aictl.mcp.ops import jsonable

_GLOB_CHARS = re.compile(r"[*?\[]")


def lock_inside(child: str, parents: list[str]) -> bool:
    """Is every path the child glob can lock also locked by one of the parent's globs? (conservative)"""
    from aictl.tasks.globs import path_matches

    if child in parents:
        return True
    body = child.rstrip("/")
    m = _GLOB_CHARS.search(body)
    if m is None:
        return path_matches(parents, body)
    literal = body[: m.start()]
    if "/" not in literal:  # an unanchored or top-level wildcard reaches anywhere
        return "**" in parents
    folder = literal.rsplit("/", 1)[0]
    return any(p == "**" or (p.endswith("/**") and (folder + "/").startswith(p[:-2])) for p in parents)


class ScopedOps:
    def __init__(self, store: Any, settings: Any, *, gate: Any, task_id: int, epoch: int, owner: str):
        self.store, self.settings, self.gate = store, settings, gate
        self.task_id, self.epoch, self.owner = task_id, epoch, owner
        self.lost: AictlError | None = None

    # -- the two guards: this task only, this lease only ---------------------------------------------
    def own(self, task_id: int | None) -> None:
        if task_id is not None and task_id != self.task_id:
            raise PolicyDenied(
                f"this server is bound to task {self.task_id}: it cannot act on task {task_id}",
                hint="a task-scoped server serves its own task only; message another task instead",
            )

    def fence(self) -> Any:
        """The task, if this attempt still holds it; else LeaseLost, now and for every later call."""
        from aictl.tasks.queries import TaskQueries

        if self.lost is not None:
            raise self.lost
        task = TaskQueries(self.store).get(self.task_id)
        status = getattr(task.status, "value", task.status)
        if task.owner != self.owner or task.lease_epoch != self.epoch or status not in ("claimed", "running"):
            self.lost = LeaseLost(
                f"lease lost: task {self.task_id} epoch {self.epoch} of {self.owner} is no longer held (now "
                f"{status} at epoch {task.lease_epoch}); stop working on it",
                hint=f"see the task with: aictl task get {self.task_id}",
                details={"task_id": self.task_id, "presented_epoch": self.epoch, "current_epoch": task.lease_epoch},
            )
            raise self.lost
        return task

    # -- tools ---------------------------------------------------------------------------------------
    def get_task(self, task_id: int | None = None) -> dict[str, Any]:
        self.own(task_id)
        return jsonable(self.fence())

    def report_progress(self, text: str, task_id: int | None = None) -> dict[str, Any]:
        self.own(task_id)
        self.fence()
        line = " ".join(text.split())[:300]
        with self.store.write() as tx:
            n = tx.run(
                "UPDATE tasks SET activity = :a WHERE id = :id AND owner = :o AND lease_epoch = :e"
                " AND status IN ('claimed', 'running')",
                {"a": line, "id": self.task_id, "o": self.owner, "e": self.epoch},
            )
        if not n:
            self.fence()
        return {"task_id": self.task_id, "activity": line}

    def heartbeat(self, ttl: float | None = None, task_id: int | None = None) -> dict[str, Any]:
        from aictl.tasks.service import TaskService

        self.own(task_id)
        self.fence()
        return jsonable(TaskService(self.store, self.settings).heartbeat(self.task_id, self.owner, self.epoch, ttl=ttl))

    def attach_evidence(
        self, content: str, name: str, kind: str = "log", media_type: str = "text/plain", task_id: int | None = None
    ) -> dict[str, Any]:
        self.own(task_id)
        self.fence()
        return jsonable(
            self._evidence().put(
                content.encode("utf-8"),
                kind=kind,
                name=name,
                media_type=media_type,
                task_id=self.task_id,
                owner=self.owner,
                lease_epoch=self.epoch,
            )
        )

    def return_output(self, output: dict[str, Any], task_id: int | None = None) -> dict[str, Any]:
        """Structured output for workflows: kept as evidence of kind `output` (output.json), its fields as summary."""
        self.own(task_id)
        self.fence()
        text = json.dumps(output, ensure_ascii=False, sort_keys=True)
        return jsonable(
            self._evidence().put(
                text.encode("utf-8"),
                kind="output",
                name="output.json",
                media_type="application/json",
                task_id=self.task_id,
                owner=self.owner,
                lease_epoch=self.epoch,
                summary={"fields": sorted(output)},
            )
        )

    def create_subtasks(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Children of this task: depending on nothing this task holds, locking only inside its locks, under the
        policy's `create` (the decision is recorded)."""
        from aictl.policy.gate import denied_error
        from aictl.policy.records import write_record
        from aictl.tasks.batchfile import parse_batch
        from aictl.tasks.globs import normalize_patterns
        from aictl.tasks.service import TaskService, task_facts

        if not tasks:
            raise UsageError("give at least one subtask")
        task = self.fence()
        specs = parse_batch(json.dumps(tasks), "subtasks")
        parents = normalize_patterns(task.lock_paths)
        for s in specs:
            if any(str(d) == str(self.task_id) for d in s.depends_on):
                raise UsageError(
                    f"subtask {s.title!r} depends on its parent {self.task_id}, which is running: it "
                    "would wait for the work that created it",
                    hint="leave the parent out of depends_on",
                )
            outside = [p for p in normalize_patterns(s.lock_paths) if not lock_inside(p, parents)]
            if outside:
                raise PolicyDenied(
                    f"subtask {s.title!r} locks {', '.join(outside)}, outside task {self.task_id}'s "
                    f"locks ({', '.join(parents) or 'none'})",
                    hint="a subtask may only lock paths inside its parent's locks",
                )
            s.labels = sorted({*s.labels, f"parent:{self.task_id}"})
        if self.gate is not None:
            with self.store.read() as tx:
                row = tx.one("SELECT * FROM tasks WHERE id = :id", {"id": self.task_id})
            record = self.gate.check(
                "create",
                ai=task.ai or self.owner,
                actor=self.owner,
                task=task_facts(row),
                epoch=self.epoch,
                paths=sorted({p for s in specs for p in s.lock_paths}),
                context={"subtasks": [s.title for s in specs], "parent_task": self.task_id},
            )
            with self.store.write() as tx:
                write_record(tx, record)
            if record.effect != "allow":
                raise denied_error(record)
        self.fence()
        return jsonable(TaskService(self.store, self.settings).create_many(specs))

    def request_approval(
        self,
        action: str,
        reason: str,
        path: str | None = None,
        command: str | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> dict[str, Any]:
        """The agent asks a person before an action it may not take on its own: recorded as a require_approval
        decision of this attempt (rule aictl:agent-request). When the run ends the task waits for a person
        (awaiting_approval, naming the action); `aictl task approve` grants exactly that action to the next
        attempt, `aictl task reject` fails the task."""
        from aictl.policy.gate import GateDecision, GateRequest, GateResource, GateSubject
        from aictl.policy.records import make_record, write_record
        from aictl.policy.runtime import RUNTIME_ACTIONS
        from aictl.tasks.queries import task_row
        from aictl.tasks.service import task_facts

        if action not in RUNTIME_ACTIONS:
            raise UsageError(f"cannot ask approval for {action!r}", hint=f"one of: {', '.join(RUNTIME_ACTIONS)}")
        target = path or command or (f"{host}:{port}" if host else None)
        if not target:
            raise UsageError("name what the approval is for: path, command, or host and port")
        why = " ".join(str(reason).split())[:500] or "the agent asks"
        task = self.fence()
        with self.store.read() as tx:
            facts = task_facts(task_row(tx, self.task_id))
        extra = {k: v for k, v in (("host", host), ("port", int(port) if port is not None else None)) if v}
        request = GateRequest(
            subject=GateSubject(
                ai=task.ai or self.owner, ai_labels=[], task_id=self.task_id, lease_epoch=self.epoch, actor=self.owner
            ),
            action=action,
            resource=GateResource(task=facts, path=path, command=command, extra=extra),
            context={"requested_by": "agent"},
        )
        from aictl.tasks.approvals import AGENT_REQUEST

        if self.gate is not None:  # a deny is final: no person's approval can turn it into an allow
            verdict = self.gate.evaluate(request)
            if verdict.effect == "deny":
                raise PolicyDenied(
                    f"policy: {action} {target} is denied ({'; '.join(verdict.reasons)}); no approval can allow it",
                    hint="do the work another way, or say in your summary why it cannot be done",
                )
        decision = GateDecision("require_approval", [AGENT_REQUEST], [f"the agent asks: {why}"], None, False)
        sources = self.gate.sources if self.gate is not None else []
        record = make_record(request, decision, sources)
        with self.store.write() as tx:
            write_record(tx, record)
        return {
            "decision_id": record.decision_id,
            "action": action,
            "target": target,
            "next": "End your turn now. The task waits for a person; an approval lets the next attempt do "
            "exactly this, a rejection fails the task.",
        }

    def send_message(self, body: str, to_task: int | None = None, to_ai: str | None = None) -> dict[str, Any]:
        from aictl.execution import mailbox

        self.fence()
        return jsonable(
            mailbox.send(
                self.store,
                sender=self.owner,
                body=body,
                to_task=to_task,
                to_ai=to_ai,
                from_task=self.task_id,
                epoch=self.epoch,
            )
        )

    def read_messages(self, task_id: int | None = None) -> list[dict[str, Any]]:
        from aictl.execution import mailbox

        self.own(task_id)
        task = self.fence()
        return jsonable(mailbox.read(self.store, self.task_id, epoch=self.epoch, ai=task.ai))

    def _evidence(self) -> Any:
        from aictl.tasks.fence import fenced_evidence

        return fenced_evidence(self.store, self.settings.home, actor=self.owner)
