"""The daemon's scheduler: sweep, pick, claim, hand to a worker, repeat — without busy polling.

One scheduler thread (the main thread) owns one store connection. Each pass it
sweeps expired leases and due schedules (every `sweep_interval_s`), then, while a
worker is idle, claims the best ready task for that worker's owner name
(`<actor>/daemon-<id>/w<n>`) — through the router for AI tasks, directly for tasks
that carry a `command` (aictl.daemon.claims) — and hands the claim (task, epoch) to
the worker, whose Executor adopts it. When nothing can be claimed it waits on the
wake-up (aictl.daemon.wakeup): backoff polling on SQLite, LISTEN on PostgreSQL.

Workers are threads, not processes: a run is I/O-bound (the agent, the sandbox and
git are child processes; the daemon waits on them and on the database), threads
share the scheduler's view of who is busy, and stopping one is an Event. A crash
of the whole daemon loses nothing either way: leases expire and any daemon picks
the work up again. Each worker has its own store connection (SQLite connections
belong to one thread).

Store failures never stop the daemon: the failing connection is closed, the error
logged, and the store reopened with backoff (0.5 s doubling to 10 s).

Shutdown (SIGTERM/SIGINT, or `request_stop`): stop claiming, let running tasks
finish for `daemon_grace_s`, then release each one still running — with its epoch
and a reason, as an audit event — which makes its executor stop the run (its lease
keeper sees the task leave `running`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aictl.daemon.automerge import AutoMerger
from aictl.daemon.claims import Claimer
from aictl.daemon.files import DaemonPaths, write_status
from aictl.daemon.worker import Worker
from aictl.domain.errors import AictlError, Conflict, LeaseLost, SchemaTooNew, UsageError
from aictl.logging import get_logger
from aictl.store.base import is_store_error

log = get_logger("aictl.daemon")


@dataclass
class DaemonOptions:
    workers: int = 2
    ai_ids: list[str] | None = None  # route only to these registered AIs (None: every eligible one)
    grace_s: float | None = None  # default: settings.daemon_grace_s
    ttl: float | None = None  # lease seconds; default settings.lease_ttl
    sweep_interval_s: float = 2.0
    heartbeat_interval_s: float = 5.0  # daemons table and status.json
    poll_min_s: float = 0.05
    poll_max_s: float = 1.0
    listen_max_s: float = 5.0
    store_retry_min_s: float = 0.5
    store_retry_max_s: float = 10.0
    finish_timeout_s: float = 30.0  # after releasing, how long runs get to stop before we exit anyway
    metrics_port: int | None = None  # serve Prometheus metrics on this port (0: any free one)
    metrics_host: str = "127.0.0.1"
    console_port: int | None = None  # serve `aictl console` from this daemon on this port (0: any free one)
    console_host: str = "127.0.0.1"


def policy_fingerprint(project_dir: Path) -> tuple:
    """(path, mtime, size) of every file the policy is merged from: a change means reload."""
    from aictl.policy.merge import default_global_policy_path

    ai_dir = project_dir / ".ai" / "policies" / "ai"
    files = [
        default_global_policy_path(),
        project_dir / ".ai" / "policy.yaml",
        *(sorted(ai_dir.glob("*.yaml")) if ai_dir.is_dir() else []),
    ]
    out = []
    for p in files:
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


class Daemon:
    """The scheduler and its workers. `run()` blocks until `request_stop()` (or a signal) ends it."""

    def __init__(
        self,
        settings: Any,
        options: DaemonOptions | None = None,
        *,
        daemon_id: str | None = None,
        status_path: Path | None = None,
    ):
        if settings.project_dir is None or settings.home is None:
            from aictl.domain.errors import NotInitialized

            raise NotInitialized("the daemon runs in a project (a git repository with .ai/)", hint="aictl init")
        self.settings = settings
        self.options = options or DaemonOptions()
        if self.options.workers < 1:
            raise UsageError(f"--workers must be at least 1, not {self.options.workers}")
        self.id = daemon_id or uuid.uuid4().hex[:10]
        self.url = settings.resolved_database_url
        self.ttl = self.options.ttl or settings.lease_ttl
        grace = self.options.grace_s
        self.grace_s = float(grace if grace is not None else getattr(settings, "daemon_grace_s", 30.0))
        self.status_path = status_path
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = time.time()
        self.state = "starting"
        self.workers = [Worker(self, n) for n in range(1, self.options.workers + 1)]
        self.counts: dict[str, int] = {}
        self.last_sweep_at: float | None = None
        self.previous_daemon: str | None = None  # a dead one whose stale pid file we took over
        self.gate: Any = None
        self.gate_generation = 0
        self._gate_print: tuple = ()
        self._store: Any = None
        self._store_error: str | None = None
        self._store_down_since: float | None = None
        self._store_retry_at = 0.0
        self._store_watch: Any = None  # aictl.store.identity.StoreWatch of the store we started on
        self.fatal_error: AictlError | None = None  # why the daemon stopped on its own (exit 1)
        self._store_backoff = self.options.store_retry_min_s
        self._last_store_ok: float | None = None
        self._paused_until = 0.0  # after an unexpected error in a pass
        self.store_generation = 0  # bumped on every store failure: workers reopen their connections
        self._registered = False
        self._stop = threading.Event()
        self._stop_now = threading.Event()
        self._reload = threading.Event()
        self._idle = threading.Event()
        self._lock = threading.Lock()
        self._released: set[tuple[int, int]] = set()
        self.claimer = Claimer(settings, ttl=self.ttl, ai_ids=self.options.ai_ids)
        self._notifier: Any = None
        self.wakeup: Any = None
        self._next_sweep = 0.0
        self._next_beat = 0.0
        self._next_due: float | None = None
        self._status_dirty = True
        self.automerge = AutoMerger(self)

    # -- set-up --------------------------------------------------------------------------

    def prepare(self) -> None:
        """Everything that must work before we report ready: policy, notifier, store URL. Raises on bad config."""
        from aictl.policy.gate import load_gate

        self._gate_print = policy_fingerprint(Path(self.settings.project_dir))
        self.gate = load_gate(self.settings.project_dir)
        self.claimer.set_gate(self.gate)
        if self.settings.notifications:
            from aictl.daemon.notify import Notifier

            self._notifier = Notifier.from_settings(self.settings)
        store = self._try_store(fatal_config=True)
        if store is not None and self.options.ai_ids:
            from aictl.agents.registry import Registry
            from aictl.domain.errors import NotFound

            unknown = [a for a in self.options.ai_ids if Registry(store).find(a) is None]
            if unknown:
                raise NotFound(f"no AI registered as {', '.join(unknown)}", hint="see them with: aictl ai list")
        if store is not None:
            self._register(store)  # before ready: `daemon start` returning means `daemon status` lists it
            store.close()  # run() may be on another thread, and a SQLite connection belongs to its thread
            self._store = None

    def _try_store(self, *, fatal_config: bool = False) -> Any:
        from aictl.store.identity import StoreReplaced

        if self._store is not None:
            return self._store
        if time.monotonic() < self._store_retry_at:
            return None
        try:
            self._store = self.open_store()
        except StoreReplaced as e:
            if fatal_config:
                raise
            log.error("store vanished or replaced; stopping", error=e.message, hint=e.hint)
            self.fatal_error = e
            self.request_stop(now=True)
            return None
        except (UsageError, SchemaTooNew) as e:
            if fatal_config:
                raise
            self._store_failed(e)
            return None
        except Exception as e:  # noqa: BLE001 - unreachable store: retry with backoff
            self._store_failed(e)
            return None
        self._store_ok()
        return self._store

    def open_store(self) -> Any:
        from aictl.store import open_store
        from aictl.store.identity import StoreWatch, check_marker, expect_existing

        expect_existing(self.url, self.settings.home)  # never a new empty store in place of the project's
        store = open_store(self.url, busy_timeout_ms=self.settings.busy_timeout_ms)
        try:
            check_marker(store, self.settings.home)
            watch = StoreWatch.of(store)
        except BaseException:
            store.close()
            raise
        if self._store_watch is None:
            self._store_watch = watch  # the store this daemon runs on, for its whole life
        return store

    def _check_store(self, store: Any, *, deep: bool) -> bool:
        """Stop (fatal_error set) if the store vanished or was replaced under us; True while it is the same."""
        from aictl.store.identity import StoreReplaced

        try:
            if self._store_watch is not None:
                self._store_watch.check(store, deep=deep)
        except StoreReplaced as e:
            log.error("store vanished or replaced; stopping", error=e.message, hint=e.hint)
            self.fatal_error = e
            self.request_stop(now=True)
            return False
        return True

    def _store_ok(self) -> None:
        self._last_store_ok = time.time()
        if self._store_error is not None:
            log.info("store reachable again", down_s=round(time.time() - (self._store_down_since or time.time()), 1))
            self._status_dirty = True
        self._store_error = None
        self._store_down_since = None
        self._store_backoff = self.options.store_retry_min_s

    def _store_failed(self, e: BaseException) -> None:
        msg = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
        msg = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
        if self._store_error is None:
            self._store_down_since = time.time()
        log.warning("store unreachable; retrying", error=msg, retry_in_s=self._store_backoff)
        self._store_error = msg
        self.store_generation += 1
        self._store_retry_at = time.monotonic() + self._store_backoff
        self._store_backoff = min(self.options.store_retry_max_s, self._store_backoff * 2)
        self._status_dirty = True
        if self._store is not None:
            try:
                self._store.close()
            except Exception:  # noqa: BLE001 - it is broken already
                pass
        self._store = None

    # -- control (thread- and signal-safe) --------------------------------------------------

    def request_stop(self, now: bool = False) -> None:
        if now:
            self._stop_now.set()
        self._stop.set()
        if self.wakeup is not None:
            self.wakeup.wake()
        self._idle.set()

    def request_reload(self) -> None:
        self._reload.set()
        if self.wakeup is not None:
            self.wakeup.wake()

    def notify(self, event_type: str, payload: dict[str, Any]) -> None:
        if self._notifier is not None:
            try:
                self._notifier.notify(event_type, payload)
            except Exception as e:  # noqa: BLE001 - a notification problem must not stop the work
                log.error("notification failed", event_type=event_type, error=str(e))

    def released(self, task_id: int, epoch: int) -> bool:
        with self._lock:
            return (task_id, epoch) in self._released

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self._status_dirty = True

    def _worker_idle(self) -> None:
        self._status_dirty = True
        self._idle.set()
        if self.wakeup is not None:
            self.wakeup.wake()

    def _on_exec_event(self, worker: int, event: dict[str, Any]) -> None:
        if event.get("type") == "ai_paused":  # a rate or usage limit: the router skips the AI until then
            log.warning(
                "AI paused by a usage limit",
                worker=worker,
                task_id=event.get("task_id"),
                ai=event.get("ai"),
                until=event.get("until"),
                reason=event.get("reason"),
            )
            self.notify(
                "task.rate_limited",
                {k: event.get(k) for k in ("task_id", "ai", "until", "reason")} | {"daemon": self.id},
            )
        elif event.get("type") == "ai_unhealthy":  # its provider cannot be reached: skipped until a probe passes
            log.warning(
                "AI unhealthy",
                worker=worker,
                task_id=event.get("task_id"),
                ai=event.get("ai"),
                reason=event.get("reason"),
            )
            self.notify(
                "ai.unhealthy", {k: event.get(k) for k in ("task_id", "ai", "until", "reason")} | {"daemon": self.id}
            )
        elif event.get("type") == "output":
            log.debug(
                "output",
                worker=worker,
                task_id=event.get("task_id"),
                stream=event.get("stream"),
                line=str(event.get("line"))[:500],
            )
        elif event.get("type") == "phase":
            log.debug("phase", worker=worker, **{k: v for k, v in event.items() if k not in ("type", "ts")})

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        from aictl.daemon.wakeup import make_wakeup

        o = self.options
        self.wakeup = make_wakeup(self.url, poll_min=o.poll_min_s, poll_max=o.poll_max_s, listen_max=o.listen_max_s)
        if self._stop.is_set():
            self.wakeup.wake()
        for w in self.workers:
            w.thread.start()
        self.state = "running"
        log.info(
            "daemon started",
            daemon=self.id,
            pid=self.pid,
            workers=len(self.workers),
            ttl=self.ttl,
            grace_s=self.grace_s,
            store=self.settings.resolved_database_url.split("://")[0],
            wakeup=self.wakeup.mode,
            ai_ids=o.ai_ids,
        )
        self.notify("daemon.started", {"daemon": self.id, "host": self.host, "pid": self.pid})
        try:
            while not self._stop.is_set():
                found = False
                try:
                    found = self._tick()
                except Exception as e:  # noqa: BLE001 - log, back off, keep going: never crash
                    self._pass_failed(e)
                if found:
                    self.wakeup.reset()
                self._write_status_if_dirty()
                if self._stop.is_set():
                    break
                self.wakeup.wait(self._wait_cap())
        finally:
            self._shutdown()

    def _pass_failed(self, e: BaseException) -> None:
        """A store error closes the connection and retries with backoff; anything else is a bug: log it whole,
        pause as long, keep the connection."""
        if is_store_error(e):
            self._store_failed(e)
            return
        import traceback

        log.error(
            "scheduler pass failed; retrying",
            error=f"{type(e).__name__}: {getattr(e, 'message', e)}",
            retry_in_s=self._store_backoff,
            traceback="".join(traceback.format_exception(e)),
        )
        self._paused_until = time.monotonic() + self._store_backoff
        self._store_backoff = min(self.options.store_retry_max_s, self._store_backoff * 2)

    def _tick(self) -> bool:
        if time.monotonic() < self._paused_until:
            return False
        store = self._try_store()
        if store is None:
            return False
        now = time.monotonic()
        if not self._check_store(store, deep=now >= self._next_beat):
            return False
        if not self._registered:
            self._register(store)
        if self._reload.is_set():
            self._reload.clear()
            self._reload_policy(force=True)
        if now >= self._next_beat:
            self._heartbeat(store)
            self._reload_policy()
            self._next_beat = now + self.options.heartbeat_interval_s
        if now >= self._next_sweep:
            self._sweep(store)
            self._next_sweep = now + self.options.sweep_interval_s
        claimed = 0
        idle = [w for w in self.workers if not w.busy]
        ready = False
        if idle and not self._stop.is_set():
            ready, self._next_due = self.claimer.ready_now(store)
        if ready:
            for w in idle:
                if self._stop.is_set():
                    break
                job = self.claimer.claim(store, w.owner)
                if job is None:
                    break
                log.debug("claimed", task_id=job.task_id, epoch=job.epoch, worker=w.n, ai=job.ai)
                w.assign(job)
                claimed += 1
                self._status_dirty = True
        self._store_ok()
        return claimed > 0

    def _wait_cap(self) -> float:
        now = time.monotonic()
        caps = [self._next_sweep - now, self._next_beat - now]
        if self._store is None:
            caps.append(self._store_retry_at - now)
        if self._paused_until > now:
            caps.append(self._paused_until - now)
        if self._next_due is not None:
            caps.append(self._next_due - time.time())
        return max(0.0, min(caps))

    def _stop_reaped_runs(self, reaped: list[Any]) -> None:
        """A reaped lease's run (its holder died or froze) is killed now, not when someone reclaims the task."""
        from aictl.sandbox.runs import stop_stale_runs

        if self.settings.home is None:
            return
        for t in reaped:
            stopped = stop_stale_runs(self.settings.home / "workspaces", t.id, t.lease_epoch + 1)
            if stopped:
                log.info("runs of a reaped lease stopped", task=t.id, stopped=stopped)

    def _sweep(self, store: Any) -> None:
        from aictl.tasks.queries import any_lease_expired
        from aictl.tasks.service import TaskService

        now = time.time()
        with store.read() as tx:
            expired = any_lease_expired(tx, now)
        if expired:
            reaped = TaskService(store, self.settings).reap()
            if reaped:
                log.info("expired leases swept", tasks=[t.id for t in reaped])
                self._stop_reaped_runs(reaped)
        from aictl.tasks.schedules import fire_due

        try:
            created = fire_due(store, self.settings, now, policy=self.gate)
        except AictlError as e:
            log.error("schedules could not fire", error=e.message)
            created = []
        if created:
            log.info("schedules fired", tasks=list(created))
        self.automerge.poke(store)
        from aictl.workflows.engine import advance_all

        advance_all(store, self.settings, policy=self.gate)  # approvals, merges, and runs a crash left behind
        self.last_sweep_at = time.time()

    def _reload_policy(self, force: bool = False) -> None:
        from aictl.policy.gate import load_gate

        fp = policy_fingerprint(Path(self.settings.project_dir))
        if fp == self._gate_print and not force:
            return
        self._gate_print = fp
        try:
            gate = load_gate(self.settings.project_dir)
        except AictlError as e:
            log.error("policy changed but does not load; keeping the previous one", error=e.message)
            return
        self.gate = gate
        self.gate_generation += 1
        self.claimer.set_gate(gate)
        log.info("policy reloaded", sources=[s["path"] for s in gate.sources] if gate else [])

    # -- registry and status ----------------------------------------------------------------

    def _register(self, store: Any) -> None:
        from aictl.daemon.registry import DaemonRegistry

        reg = DaemonRegistry(store)
        if self.previous_daemon:
            if reg.mark_stopped(
                self.previous_daemon,
                actor=self.settings.actor,
                reason=f"found dead by daemon {self.id}: its pid file was stale",
            ):
                log.info("marked the dead daemon stopped", previous=self.previous_daemon)
            self.previous_daemon = None
        reg.register(
            self.id,
            project=str(self.settings.project_dir),
            info=self.snapshot(brief=True),
            actor=self.settings.actor,
            pid=self.pid,
            host=self.host,
        )
        self._registered = True

    def _heartbeat(self, store: Any) -> None:
        from aictl.daemon.registry import DaemonRegistry

        if not DaemonRegistry(store).heartbeat(self.id, status=self.state, info=self.snapshot(brief=True)):
            log.warning("this daemon's row in the daemons table is gone or marked stopped", daemon=self.id)
        self._status_dirty = True

    def snapshot(self, *, brief: bool = False) -> dict[str, Any]:
        running = [w.job.describe() | {"worker": w.n} for w in self.workers if w.job is not None]
        busy = len(running)
        out: dict[str, Any] = {
            "daemon_id": self.id,
            "pid": self.pid,
            "host": self.host,
            "project": str(self.settings.project_dir),
            "state": self.state,
            "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "workers": {"total": len(self.workers), "busy": busy, "idle": len(self.workers) - busy},
            "running": running,
            "ai_ids": self.options.ai_ids,
        }
        if brief:
            return out
        with self._lock:
            counts = dict(self.counts)
        out.update(
            {
                "last_sweep_at": self.last_sweep_at,
                "store": {
                    "backend": self.url.split("://")[0].split("+")[0],
                    "reachable": self._store_error is None,
                    "error": self._store_error,
                    "down_since": self._store_down_since,
                    "last_ok_at": self._last_store_ok,
                },
                "wakeup": self.wakeup.describe() if self.wakeup is not None else None,
                "policy": [s["path"] for s in self.gate.sources] if self.gate is not None else [],
                "grace_s": self.grace_s,
                "lease_ttl": self.ttl,
                "outcomes": counts,
                "updated_at": time.time(),
            }
        )
        return out

    def _write_status_if_dirty(self) -> None:
        if not self._status_dirty or self.status_path is None:
            return
        self._status_dirty = False
        try:
            write_status(DaemonPaths(self.status_path.parent), self.snapshot())
        except OSError as e:
            log.warning("cannot write status.json", error=str(e))

    # -- shutdown -----------------------------------------------------------------------

    def _shutdown(self) -> None:
        self.state = "draining"
        self._status_dirty = True
        self._write_status_if_dirty()
        busy = [w for w in self.workers if w.busy]
        grace = 0.0 if self._stop_now.is_set() else self.grace_s
        if busy:
            log.info(
                "stopping: waiting for running tasks", grace_s=grace, running=[w.job.task_id for w in busy if w.job]
            )
        deadline = time.monotonic() + grace
        next_beat = time.monotonic() + self.options.heartbeat_interval_s
        while any(w.busy for w in self.workers) and not self._stop_now.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._idle.clear()
            if not any(w.busy for w in self.workers):
                break
            self._idle.wait(min(left, 1.0))
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.options.heartbeat_interval_s
                self._quiet(self._heartbeat_if_store)
            self._write_status_if_dirty()
        still = [w for w in self.workers if w.busy and w.job is not None]
        if still:
            self._release_running(still, grace)
            end = time.monotonic() + self.options.finish_timeout_s
            while any(w.busy for w in self.workers) and time.monotonic() < end:
                self._idle.clear()
                if any(w.busy for w in self.workers):
                    self._idle.wait(0.2)
            unfinished = [w.job.task_id for w in self.workers if w.job is not None]
            if unfinished:
                log.error("runs did not stop in time; exiting anyway (their leases will expire)", tasks=unfinished)
        for w in self.workers:
            w.quit()
        for w in self.workers:
            w.thread.join(timeout=2)
        self.automerge.join(max(grace, 2.0))  # a merge in flight finishes: its ref move and its records go together
        self.state = "stopped"
        self._quiet(self._sign_off)
        self.notify(
            "daemon.stopped", {"daemon": self.id, "host": self.host, "pid": self.pid, "outcomes": dict(self.counts)}
        )
        if self._notifier is not None:
            try:
                self._notifier.close(5.0)
            except Exception as e:  # noqa: BLE001
                log.error("notifier did not close cleanly", error=str(e))
        if self.wakeup is not None:
            self.wakeup.close()
        self._status_dirty = True
        self._write_status_if_dirty()
        if self._store is not None:
            self._quiet(self._store.close)
            self._store = None
        log.info("daemon stopped", daemon=self.id, outcomes=dict(self.counts))

    def _release_running(self, workers: list[Worker], grace: float) -> None:
        """Give each still-running task back, with its epoch and a reason; its executor then stops the run."""
        from aictl.tasks.service import TaskService

        reason = (
            f"daemon {self.id} stopping now"
            if grace == 0
            else f"daemon {self.id} stopping: the grace period of {grace:g}s ran out"
        )
        for w in workers:
            job = w.job
            if job is None:
                continue
            with self._lock:
                self._released.add((job.task_id, job.epoch))
            try:
                store = self._store or self._try_store()
                if store is None:
                    raise AictlError(self._store_error or "store unreachable")
                # No policy here: giving work back must not be refusable (a refusal would only
                # delay recovery until the lease expires).
                TaskService(store, self.settings).release(job.task_id, w.owner, job.epoch, reason=reason)
                log.warning("released a running task", task_id=job.task_id, epoch=job.epoch, reason=reason)
            except (LeaseLost, Conflict) as e:
                log.info("task finished before it could be released", task_id=job.task_id, error=e.message)
            except Exception as e:  # noqa: BLE001 - the lease will expire instead
                log.error(
                    "could not release a running task; its lease will expire",
                    task_id=job.task_id,
                    error=getattr(e, "message", str(e)),
                )

    def _heartbeat_if_store(self) -> None:
        store = self._try_store()
        if store is not None:
            self._heartbeat(store)

    def _sign_off(self) -> None:
        from aictl.daemon.registry import DaemonRegistry

        store = self._try_store()
        if store is None or not self._registered:
            return
        DaemonRegistry(store).mark_stopped(
            self.id, actor=self.settings.actor, reason="stopped", info=self.snapshot(brief=True)
        )

    def _quiet(self, fn: Any) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - shutdown goes on; the store may be gone
            log.warning(
                "shutdown step failed", step=getattr(fn, "__name__", str(fn)), error=getattr(e, "message", str(e))
            )
