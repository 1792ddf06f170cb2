"""`aictl merge`: land done tasks' commits on the integration branch, one entry at a time, in DAG order.

For each entry: policy decides `merge`; the task's change is composed onto the target's tip
(aictl.merge.git: rebase or merge, no worktree); the task's verify and the project's
`merge_verify` run on the result in a reused scratch worktree, in the sandbox; on success the
target ref moves (guarded by its old value) and the task becomes `merged`, with an audit event
naming the commit. A conflict or a failed verify leaves the target alone: the task goes back to
the queue with the evidence in its result (`merge_conflicts: requeue`), or a follow-up resolve
task is created (`resolve_task`). The merge commit's trailer carries the audit chain head.

The main worktree is touched only at the end, and only when it is on the target and clean (a
fast-forward of its files); with local changes it is left alone and the report says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from aictl.domain.errors import AictlError, Conflict, UsageError
from aictl.domain.models import Task
from aictl.merge.git import MergeGit

if TYPE_CHECKING:
    from aictl.config import Settings
    from aictl.merge.lease import QueueLease
    from aictl.policy.gate import PolicyGate
    from aictl.sandbox.remote import Remote
    from aictl.store.base import Store

__all__ = ["MergeEntry", "MergeQueue", "MergeReport", "MergeStatus", "QueueItem"]

LOG_TAIL = 4000  # characters of a failed verify's log kept in the task's result (the whole log is evidence)


class MergeEntry(BaseModel):
    task_id: int
    title: str
    outcome: str  # merged, would_merge, empty, conflict, verify_failed, denied, awaiting_approval
    commit: str | None = None  # the task's commit
    result_commit: str | None = None  # what landed (or would) on the target
    conflicts: list[str] = Field(default_factory=list)
    reason: str = ""
    evidence: str | None = None  # digest of the verify log
    followup_task: int | None = None
    onto: str | None = None  # the target's tip it was composed onto


class MergeReport(BaseModel):
    into: str
    dry_run: bool = False
    target_before: str | None = None
    target_after: str | None = None
    entries: list[MergeEntry] = Field(default_factory=list)
    worktree: str = "untouched"  # fast_forwarded, left_dirty (local changes), untouched (not on the target)

    @property
    def exit_code(self) -> int:
        """0 all merged (or nothing to merge), 5 a policy refused or parked one, 1 some entry was sent back."""
        outcomes = {e.outcome for e in self.entries}
        if outcomes & {"denied", "awaiting_approval"}:
            return 5
        return 1 if outcomes & {"conflict", "verify_failed"} else 0


class QueueItem(BaseModel):
    task_id: int
    title: str
    state: str  # pending (done, waiting to merge) or sent_back (queued again after a rejected merge)
    commit: str | None = None
    reason: str = ""


class MergeStatus(BaseModel):
    into: str
    tip: str | None
    items: list[QueueItem]


class MergeQueue:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        policy: PolicyGate | None = None,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        owner: str | None = None,
    ):
        from aictl.sandbox.workspace import WorkspaceManager
        from aictl.tasks.queries import TaskQueries
        from aictl.tasks.service import TaskService

        self.store, self.settings, self.policy, self.clock = store, settings, policy, clock
        self.emit = on_event or (lambda e: None)
        self.owner = owner  # who holds the queue's lease; default actor/host:pid
        self.workspaces = WorkspaceManager.from_settings(settings)
        self.git = MergeGit(self.workspaces)
        self.queries = TaskQueries(store, clock=clock)
        self.svc = TaskService(store, settings, clock=clock, policy=policy)
        self.remote: Remote | None = None
        if settings.remote:
            from aictl.sandbox.remote import Remote

            self.remote = Remote(self.workspaces, settings.remote)

    # -- what is queued ------------------------------------------------------------

    def target(self, into: str | None = None) -> str:
        branch = into or self.settings.integration_branch or self.git.current_branch()
        if not branch:
            raise UsageError(
                "the main worktree is on a detached HEAD, so there is no default merge target",
                hint="name one: aictl merge --into main (or set integration_branch in .ai/config.yaml)",
            )
        return branch.removeprefix("refs/heads/")

    def pending(self, ids: list[int] | None = None) -> list[Task]:
        """Done tasks to merge, dependencies first (then by id)."""
        if ids:
            tasks = [self.queries.get(i) for i in ids]
            for t in tasks:
                if t.status != "done":
                    raise Conflict(
                        f"task {t.id} is {t.status}; only done tasks can be merged",
                        hint="see what is ready to merge: aictl merge status",
                    )
        else:
            tasks = self.queries.list(statuses=["done"], limit=None)
        return _dag_order(tasks)

    def status(self, into: str | None = None) -> MergeStatus:
        into = self.target(into)
        items = [
            QueueItem(
                task_id=t.id,
                title=t.title,
                state="pending",
                commit=t.result.get("commit") if isinstance(t.result, dict) else None,
            )
            for t in self.pending()
        ]
        for t in self.queries.list(statuses=["queued", "claimed", "running"]):
            merge = t.result.get("merge") if isinstance(t.result, dict) else None
            if merge:
                items.append(QueueItem(task_id=t.id, title=t.title, state="sent_back", reason=merge.get("reason", "")))
        return MergeStatus(into=into, tip=self.git.rev(f"refs/heads/{into}"), items=items)

    # -- the queue -------------------------------------------------------------------

    def run(
        self, ids: list[int] | None = None, *, into: str | None = None, dry_run: bool = False, batch: int | None = None
    ) -> MergeReport:
        """Merge in DAG order, `batch` entries (default merge_batch) verified together, bisected on failure."""
        into = self.target(into)
        ref = f"refs/heads/{into}"
        tip = self.git.rev(ref)
        if tip is None:
            raise UsageError(f"merge target branch {into!r} does not exist", hint=f"create it first: git branch {into}")
        lease = None
        if not dry_run:
            from aictl.merge.lease import QueueLease, default_owner

            lease = QueueLease(
                self.store,
                ref,
                self.owner or default_owner(self.settings.actor),
                ttl=self.settings.lease_ttl,
                clock=self.clock,
            )
            lease.acquire()
        try:
            tip = self.git.rev(ref) or tip  # re-read under the lease
            report = MergeReport(into=into, dry_run=dry_run, target_before=tip, target_after=tip)
            # Judged before the ref moves: afterwards the user's index differs from HEAD by our change.
            on_target = self.git.current_branch() == into
            clean = on_target and self.git.worktree_clean()
            tasks = self.pending(ids)
            if self.remote is not None:
                tip, tasks = self._sync_remote(ref, tip, tasks, dry_run)
            size = max(1, batch or self.settings.merge_batch)
            for i in range(0, len(tasks), size):
                tip = self._batch(tasks[i : i + size], ref, tip, dry_run, lease, report)
            report.target_after = tip
        finally:
            if lease is not None:
                lease.release()
        if not dry_run and tip != report.target_before and on_target:
            if clean:
                self.git.fast_forward_worktree(report.target_before or tip, tip)
                report.worktree = "fast_forwarded"
            else:
                report.worktree = "left_dirty"
        return report

    def _batch(
        self, tasks: list[Task], ref: str, tip: str, dry_run: bool, lease: QueueLease | None, report: MergeReport
    ) -> str:
        """Compose the batch onto the tip one after another, then verify and land it; the new tip."""
        stack: list[tuple[Task, MergeEntry]] = []
        cur = tip
        for task in tasks:
            entry = self._prepare(task, ref, cur, dry_run)
            report.entries.append(entry)
            if entry.outcome == "merged" and entry.result_commit:  # composed, not verified yet
                stack.append((task, entry))
                cur = entry.result_commit
        landed = self._land(stack, ref, tip, dry_run, lease)
        for _, entry in stack:
            self.emit({"type": "merge", **entry.model_dump()})
        return landed

    def _prepare(self, task: Task, ref: str, tip: str, dry_run: bool) -> MergeEntry:
        """Policy, then the composed commit on `tip` (outcome still `merged`), or the entry's final outcome."""
        entry = MergeEntry(task_id=task.id, title=task.title, outcome="merged", onto=tip)
        commit = task.result.get("commit") if isinstance(task.result, dict) else None
        effect, reason = self._policy(task, ref, dry_run)
        if effect != "allow":
            entry.outcome = "awaiting_approval" if effect == "require_approval" else "denied"
            entry.reason = reason + (
                f"; approve it with: aictl task approve {task.id}" if effect == "require_approval" else ""
            )
            return entry
        if not commit or self.git.is_ancestor(commit, tip):
            # Nothing of its own to land (no change, or already on the target): merged as it stands.
            entry.outcome = "would_merge" if dry_run else "empty"
            if not dry_run:
                self.svc.mark_merged(task.id, commit=tip, into=ref.removeprefix("refs/heads/"))
            return entry
        entry.commit = commit
        return self._compose(task, entry, ref, tip, dry_run)

    def _compose(self, task: Task, entry: MergeEntry, ref: str, tip: str, dry_run: bool) -> MergeEntry:
        assert entry.commit is not None
        entry.onto = tip
        composed = self.git.compose(
            tip,
            entry.commit,
            base=self.git.task_base(task.id, entry.commit, tip),
            strategy=self.settings.merge_strategy,
            message=self._message(task, entry.commit),
        )
        if composed.commit is None:
            entry.outcome, entry.conflicts, entry.result_commit = "conflict", composed.conflicts, None
            entry.reason = f"conflicts with {ref.removeprefix('refs/heads/')} in: {', '.join(composed.conflicts)}"
            return self._reject(task, entry, dry_run)
        entry.result_commit = composed.commit
        return entry

    def _land(
        self, stack: list[tuple[Task, MergeEntry]], ref: str, tip: str, dry_run: bool, lease: QueueLease | None
    ) -> str:
        """Verify the stack's top; pass: the target moves there at once; fail: bisect (bors). The new tip."""
        if not stack:
            return tip
        top = stack[-1][1].result_commit
        assert top is not None
        failure = self._verify([t for t, _ in stack], top)
        if failure is None:
            if dry_run:
                for _, entry in stack:
                    entry.outcome = "would_merge"
                return top
            if lease is not None:
                lease.renew()  # the fence: a holder that lost the queue moves nothing
            if self.remote is not None and not self.remote.push_branch(ref.removeprefix("refs/heads/"), top):
                raise Conflict(
                    f"{self.remote.name}'s {ref.removeprefix('refs/heads/')} moved while the merge queue was landing"
                    " tasks (a push from outside aictl's queue)",
                    hint="run aictl merge again; it starts from the remote's new tip",
                )
            if not self.git.move(ref, top, tip, f"aictl merge: {len(stack)} task(s)"):
                raise Conflict(
                    f"{ref.removeprefix('refs/heads/')} moved while the merge queue was landing tasks",
                    hint="run aictl merge again; it starts from the new tip",
                )
            head = self._chain_head()
            for task, entry in stack:
                assert entry.result_commit is not None
                self.svc.mark_merged(
                    task.id, commit=entry.result_commit, into=ref.removeprefix("refs/heads/"), chain_head=head
                )
            landed = {task.id for task, _ in stack}
            self.workspaces.prune_branches(landed.__contains__)  # their work is on the target now
            if self.remote is not None:
                self.remote.delete_tasks(sorted(landed))
            return top
        if len(stack) == 1:
            task, entry = stack[0]
            entry.outcome, (entry.reason, entry.evidence, tail) = "verify_failed", failure
            self._reject(task, entry, dry_run, tail)
            return tip
        first, rest = stack[: len(stack) // 2], stack[len(stack) // 2 :]
        new_tip = self._land(first, ref, tip, dry_run, lease)
        if new_tip != first[-1][1].result_commit:
            # Part of the first half went back: the rest was composed on commits that never landed.
            rebuilt, cur = [], new_tip
            for task, entry in rest:
                self._compose(task, entry, ref, cur, dry_run)
                if entry.result_commit is not None:
                    rebuilt.append((task, entry))
                    cur = entry.result_commit
            rest = rebuilt
        return self._land(rest, ref, new_tip, dry_run, lease)

    # -- steps -----------------------------------------------------------------------

    def _sync_remote(self, ref: str, tip: str, tasks: list[Task], dry_run: bool) -> tuple[str, list[Task]]:
        """Start from the remote's tip (fast-forwarding the local target to it) and fetch the task branches other
        hosts pushed; a task whose branch cannot be fetched waits for a later run (its host may push it yet)."""
        assert self.remote is not None
        branch = ref.removeprefix("refs/heads/")
        theirs = self.remote.fetch_branch(branch)
        if theirs is not None and theirs != tip:
            if self.git.is_ancestor(tip, theirs):
                if not dry_run and not self.git.move(ref, theirs, tip, f"aictl merge: {self.remote.name}/{branch}"):
                    raise Conflict(f"{branch} moved while the merge queue fetched it", hint="run aictl merge again")
                tip = theirs
            elif not self.git.is_ancestor(theirs, tip):
                raise Conflict(
                    f"{branch} and {self.remote.name}/{branch} have diverged: the merge queue will not push over "
                    "either",
                    hint=f"reconcile them (git pull --rebase {self.remote.name} {branch}), then run aictl merge again",
                )
        ready = []
        for t in tasks:
            commit = t.result.get("commit") if isinstance(t.result, dict) else None
            if commit and not self.remote.has(str(commit)):
                try:
                    self.remote.fetch_tasks([t.id])
                except AictlError:
                    continue
            ready.append(t)
        return tip, ready

    def _policy(self, task: Task, ref: str, dry_run: bool) -> tuple[str, str]:
        """allow, deny or require_approval; a parked merge approved (`task approve`) since it was parked is allowed."""
        if self.policy is None:
            return "allow", ""
        from aictl.policy.records import write_record
        from aictl.tasks.queries import task_row
        from aictl.tasks.service import task_facts

        with self.store.read() as tx:
            row = task_row(tx, task.id)
            parked = tx.one(
                "SELECT MAX(ts) AS ts FROM decisions WHERE task_id = :t AND action = 'merge'"
                " AND effect = 'require_approval'",
                {"t": task.id},
            )
        record = self.policy.check(
            "merge",
            ai=task.ai or self.settings.actor,
            actor=self.settings.actor,
            task=task_facts(row),
            context={"into": ref.removeprefix("refs/heads/")},
        )
        if record.effect == "require_approval" and parked and parked["ts"] is not None:
            verdict = self.svc.verdict_since(task.id, parked["ts"])
            if verdict is not None:
                record.effect = "allow" if verdict["verdict"] == "approve" else "deny"
                record.reasons.append(
                    f"{'approved' if verdict['verdict'] == 'approve' else 'rejected'} by {verdict['by']}"
                    + (f": {verdict['comment']}" if verdict.get("comment") else "")
                )
        if not dry_run:
            with self.store.write() as tx:
                write_record(tx, record)
        return record.effect, "; ".join(record.reasons) or f"policy: {record.effect}"

    def _message(self, task: Task, commit: str) -> str:
        body = self.git.message_of(commit).strip() or f"aictl: task {task.id}: {task.title}"
        return f"{body}\n\nAictl-Task: {task.id}\nAictl-Task-Commit: {commit}\nAictl-Chain-Head: {self._chain_head()}\n"

    def _chain_head(self) -> str:
        with self.store.read() as tx:
            row = tx.one("SELECT last_hash FROM audit_head WHERE id = 1", {})
        return row["last_hash"] if row else ""

    def _verify(self, tasks: list[Task], commit: str) -> tuple[str, str, str] | None:
        """Run the tasks' verify commands (each distinct one once) and merge_verify on `commit`.

        None when all pass, else (reason, evidence digest of the log, the log's tail).
        """
        commands = list(dict.fromkeys(c for c in [*(t.verify for t in tasks), self.settings.merge_verify] if c))
        if not commands:
            return None
        from aictl.audit.evidence import EvidenceStore
        from aictl.sandbox import get_sandbox
        from aictl.sandbox.base import SandboxSpec

        assert self.settings.home is not None
        scratch = self.workspaces.workspaces_dir / "merge-scratch"
        self.workspaces._ensure_dir()
        self.git.checkout_scratch(scratch, commit)
        s = self.settings
        spec = SandboxSpec(
            backend=s.sandbox_backend,
            image=s.sandbox_image,
            network=s.sandbox_network,
            cpus=s.sandbox_cpus,
            memory_mb=s.sandbox_memory_mb,
            pids=s.sandbox_pids,
            timeout_s=s.execution_timeout,
        )
        ids = ",".join(str(t.id) for t in tasks)
        for command in commands:
            res = get_sandbox(spec.backend).run(
                ["/bin/sh", "-c", command],
                workdir=Path(scratch),
                spec=spec,
                labels={"tasks": ids, "step": "merge_verify"},
            )
            if res.exit_code == 0 and not res.timed_out:
                continue
            log = f"$ {command}\n{res.stdout}" + (f"\n[stderr]\n{res.stderr}" if res.stderr else "")
            ref = EvidenceStore(self.store, s.home, actor=s.actor).put(
                log,
                kind="verify_log",
                name=f"merge-verify-{commit[:12]}.txt",
                summary={"command": command, "exit_code": res.exit_code, "tasks": ids, "commit": commit},
            )
            reason = f"verify failed on the merged result (exit {res.exit_code}): {command}"
            return reason, ref.digest, log[-LOG_TAIL:]
        return None

    def _reject(self, task: Task, entry: MergeEntry, dry_run: bool, log_tail: str | None = None) -> MergeEntry:
        if dry_run:
            return entry
        evidence = {
            "outcome": entry.outcome,
            "reason": entry.reason,
            "conflicts": entry.conflicts,
            "onto": entry.onto,
            "evidence": entry.evidence,
            **({"verify_log_tail": log_tail} if log_tail is not None else {}),
        }
        if self.settings.merge_conflicts == "resolve_task":
            from aictl.tasks.create import TaskSpec

            followup = self.svc.create(
                TaskSpec(
                    title=f"Resolve the merge of task #{task.id}: {task.title}"[:200],
                    description=f"Task #{task.id}'s change (commit {entry.commit}) could not land: {entry.reason}.\n"
                    f"Bring that change onto the current target so it merges and its verify passes.",
                    lock_paths=task.lock_paths,
                    verify=task.verify,
                    labels=task.labels,
                    required_capabilities=task.required_capabilities,
                )
            )
            entry.followup_task = followup.id
        else:
            self.svc.send_back(task.id, evidence=evidence)
        return entry


def _dag_order(tasks: list[Task]) -> list[Task]:
    """Dependencies before dependents (among the given tasks), else by id."""
    by_id = {t.id: t for t in sorted(tasks, key=lambda t: t.id)}
    done: set[int] = set()
    out: list[Task] = []

    def visit(t: Task, path: frozenset[int]) -> None:
        if t.id in done or t.id in path:
            return
        for d in sorted(t.dependencies):
            if d in by_id:
                visit(by_id[d], path | {t.id})
        done.add(t.id)
        out.append(t)

    for t in by_id.values():
        visit(t, frozenset())
    return out
