"""A daemon worker: one thread, one store connection, one task at a time through the Executor.

The scheduler (aictl.daemon.loop) claims a task for a worker's owner name and hands
it over as a Job; the worker's Executor adopts the claim by its epoch, so the run
goes the same path as `aictl task execute`, which decides what an error in the run
means (a failed attempt). A worker never dies of one task: a store outage gives the
lease back through a fresh connection; anything else is logged.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aictl.domain.errors import Conflict, LeaseLost
from aictl.logging import get_logger
from aictl.store.base import is_store_error

log = get_logger("aictl.daemon")


@dataclass
class Job:
    task_id: int
    epoch: int
    title: str
    owner: str
    connector: str = "command"
    ai: str | None = None
    claimed_at: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "title": self.title,
            "ai": self.ai,
            "connector": self.connector,
            "owner": self.owner,
            "epoch": self.epoch,
            "since": self.claimed_at,
            "running_s": round(time.time() - self.claimed_at, 1),
        }


class Worker:
    def __init__(self, daemon: Any, n: int):
        self.daemon = daemon
        self.n = n
        self.owner = f"{daemon.settings.actor}/daemon-{daemon.id}/w{n}"
        self.job: Job | None = None
        self.runs = 0
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._store: Any = None
        self._executor: Any = None
        self._executor_gate: int = -1
        self._store_generation = 0
        self.thread = threading.Thread(target=self._run, name=f"aictl-daemon-w{n}", daemon=True)

    @property
    def busy(self) -> bool:
        return self.job is not None

    def assign(self, job: Job) -> None:
        self.job = job
        self._jobs.put(job)

    def quit(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                break
            try:
                self._execute(job)
            except BaseException as e:  # noqa: BLE001 - a worker never dies of one task
                self._drop_store()
                error = f"{type(e).__name__}: {getattr(e, 'message', e)}"
                log.error(
                    "task run failed in the daemon", task_id=job.task_id, epoch=job.epoch, worker=self.n, error=error
                )
                self.daemon._count("error")
                if is_store_error(e):
                    self._give_back(job, f"daemon worker lost the store: {error}")  # an outage: no attempt lost
                # Any other error was decided by the executor (a failed attempt) before it got here, or
                # came before the run started: then the lease expires, and the expiry counts the attempt.
            finally:
                self.job = None
                self.runs += 1
                self.daemon._worker_idle()
        self._drop_store()

    def _give_back(self, job: Job, reason: str) -> None:
        """After a crash of the run, release its lease now (with its epoch) rather than wait for expiry."""
        from aictl.tasks.service import TaskService

        try:
            with self.daemon.open_store() as store:
                TaskService(store, self.daemon.settings).release(
                    job.task_id, self.owner, job.epoch, reason=reason[:500]
                )
            log.info("released the task after the error", task_id=job.task_id, epoch=job.epoch)
        except (LeaseLost, Conflict):
            pass  # already finished, released or taken over: nothing to give back
        except Exception as e:  # noqa: BLE001 - store still down: the lease expires instead
            log.warning(
                "could not release the task after the error; its lease will expire",
                task_id=job.task_id,
                error=getattr(e, "message", str(e)),
            )

    def _executor_for(self) -> Any:
        from aictl.execution.executor import Executor

        d = self.daemon
        if self._store is not None and self._store_generation != d.store_generation:
            self._drop_store()  # the store went away since we opened it: this connection is likely dead
        if self._store is None:
            self._store = d.open_store()
            self._store_generation = d.store_generation
            self._executor = None
        if self._executor is None or self._executor_gate != d.gate_generation:
            from aictl.mcp.inproc import InProcessTaskServers

            self._executor = Executor(
                self._store,
                d.settings,
                policy=d.gate,
                on_event=lambda e: d._on_exec_event(self.n, e),
                task_servers=InProcessTaskServers(d.settings, d.gate),
            )
            self._executor_gate = d.gate_generation
        return self._executor

    def _drop_store(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except Exception:  # noqa: BLE001 - it is broken already
                pass
        self._store = self._executor = None

    def _advance_workflow(self, labels: list[str]) -> None:
        """A workflow step's task moved: move its run on now (the sweep would, a little later)."""
        from aictl.workflows.engine import advance_all, run_of

        run_id = run_of(labels)
        if run_id is None or self._store is None:
            return
        try:
            advance_all(self._store, self.daemon.settings, policy=self.daemon.gate, only=run_id)
        except Exception as e:  # noqa: BLE001 - the task's outcome stands; the next sweep advances the run
            log.warning("workflow run not advanced after its task", run=run_id, error=getattr(e, "message", str(e)))

    def _execute(self, job: Job) -> None:
        from aictl.execution.outcome import ExecuteOptions, Outcome

        d = self.daemon
        log.info(
            "task started",
            task_id=job.task_id,
            epoch=job.epoch,
            worker=self.n,
            ai=job.ai,
            connector=job.connector,
            title=job.title,
        )
        t0 = time.monotonic()
        try:
            report = self._executor_for().execute(
                job.task_id,
                ExecuteOptions(
                    owner=self.owner,
                    ai=job.ai,
                    connector=job.connector,
                    epoch=job.epoch,
                    ttl=d.ttl,
                    routed=job.ai is not None,
                ),
            )
        except LeaseLost as e:  # lost between the claim and the adoption (an expired lease, a shutdown release)
            log.warning("lease lost before the run started", task_id=job.task_id, epoch=job.epoch, error=e.message)
            d._count("lease_lost")
            return
        self._advance_workflow(report.task.labels)
        outcome = report.outcome
        if outcome is Outcome.LEASE_LOST and d.released(job.task_id, job.epoch):
            outcome = Outcome.RELEASED  # the daemon gave it back itself (a shutdown)
        d._count(outcome.value)
        log.info(
            "task finished",
            task_id=job.task_id,
            epoch=job.epoch,
            worker=self.n,
            outcome=outcome.value,
            status=str(report.task.status),
            reason=report.reason,
            seconds=round(time.monotonic() - t0, 3),
        )
        event = {
            Outcome.DONE: "task.done",
            Outcome.FAILED: "task.failed",
            Outcome.AWAITING_APPROVAL: "task.awaiting_approval",
        }.get(outcome)
        if event:
            d.notify(
                event,
                {
                    "task_id": job.task_id,
                    "title": job.title,
                    "outcome": outcome.value,
                    "reason": report.reason,
                    "status": str(report.task.status),
                    "ai": job.ai,
                    "epoch": job.epoch,
                    "daemon": d.id,
                },
            )
