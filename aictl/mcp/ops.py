"""The tools' work: each one calls the services the CLI calls, as the caller's identity, and returns plain JSON.

No `mcp` import here: the server, the task-scoped server and the tool loop share these functions.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from aictl.domain.errors import AictlError, NotFound, UsageError


def jsonable(data: Any) -> Any:
    """Models, dataclasses, lists and dicts as JSON values."""
    if hasattr(data, "model_dump"):
        return data.model_dump(mode="json")
    if is_dataclass(data) and not isinstance(data, type):
        return jsonable(asdict(data))
    if isinstance(data, (list, tuple)):
        return [jsonable(d) for d in data]
    if isinstance(data, dict):
        return {str(k): jsonable(v) for k, v in data.items()}
    if isinstance(data, Path):
        return str(data)
    return data


def error_payload(err: AictlError) -> dict[str, Any]:
    """aictl's error as a tool error carries it: code, message, hint, exit code and its class."""
    out = err.to_dict()
    out["exit_class"] = {0: "ok", 1: "failure", 2: "usage", 3: "not_found", 4: "conflict", 5: "policy_denied"}.get(
        err.exit_code, "failure"
    )
    return out


class Ops:
    """One caller's view of the project: a store, the settings (actor = the caller) and the policy gate."""

    def __init__(self, store: Any, settings: Any, *, gate: Any = None, actor: str | None = None):
        self.store = store
        self.gate = gate
        if actor and actor != getattr(settings, "actor", None):
            settings = copy.copy(settings)
            settings.actor = actor
        self.settings = settings

    @property
    def actor(self) -> str:
        return str(self.settings.actor)

    def for_actor(self, actor: str) -> Ops:
        return self if actor == self.actor else Ops(self.store, self.settings, gate=self.gate, actor=actor)

    # -- services, built per call: they are cheap and hold no state between calls --------------------
    def _tasks(self, enforce: bool = True) -> Any:
        from aictl.tasks.service import TaskService

        return TaskService(self.store, self.settings, policy=self.gate if enforce else None)

    def _queries(self) -> Any:
        from aictl.tasks.queries import TaskQueries

        return TaskQueries(self.store)

    def _claims(self, routed: bool = False) -> Any:
        from aictl.tasks.claims import Claims

        ranker = None
        if routed:
            from aictl.agents.router import Router

            ranker = Router(self.store, self.settings, policy=self.gate)
        return Claims(self.store, self.settings, policy=self.gate, ranker=ranker)

    def _evidence(self) -> Any:
        from aictl.tasks.fence import fenced_evidence

        return fenced_evidence(self.store, self.settings.home, actor=self.actor)

    # -- tasks ---------------------------------------------------------------------------------------
    def task_create(self, tasks: list[dict[str, Any]], dry_run: bool = False) -> list[dict[str, Any]]:
        from aictl.tasks.batchfile import parse_batch

        if not tasks:
            raise UsageError("give at least one task", hint='e.g. tasks: [{"title": "Fix the login bug"}]')
        import json

        specs = parse_batch(json.dumps(tasks), "tasks")
        return jsonable(self._tasks(enforce=False).create_many(specs, dry_run=dry_run))

    def task_list(
        self,
        status: list[str] | None = None,
        label: list[str] | None = None,
        owner: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        from aictl.domain.status import TaskStatus

        known = {s.value for s in TaskStatus}
        bad = [s for s in status or [] if s not in known]
        if bad:
            raise UsageError(f"unknown status {bad[0]!r}", hint=f"use one of: {', '.join(sorted(known))}")
        return jsonable(
            self._queries().list(statuses=status or None, label=label or None, owner=owner, limit=limit or None)
        )

    def task_ready(
        self, capability: list[str] | None = None, label: list[str] | None = None, limit: int = 20
    ) -> list[dict[str, Any]]:
        return jsonable(self._claims(routed=True).ready(capabilities=capability, labels=label or None, limit=limit))

    def task_get(self, task_id: int) -> dict[str, Any]:
        return jsonable(self._queries().get(task_id))

    def task_claim(
        self,
        task_id: int | None = None,
        owner: str | None = None,
        ai: str | None = None,
        capability: list[str] | None = None,
        label: list[str] | None = None,
        ttl: float | None = None,
    ) -> dict[str, Any]:
        from aictl.tasks.claims import ClaimRequest

        got = self._claims(routed=bool(ai)).claim(
            ClaimRequest(
                owner=owner or self.actor,
                task_id=task_id,
                ai=ai,
                capabilities=capability,
                labels=label or None,
                ttl=ttl,
            )
        )
        if got is None:
            raise NotFound("nothing to claim", hint="see why with the task_ready tool (aictl task ready)")
        return {"task": jsonable(got.task), "lease": jsonable(got.lease)}

    def task_heartbeat(
        self, task_id: int, epoch: int, owner: str | None = None, ttl: float | None = None
    ) -> dict[str, Any]:
        return jsonable(self._tasks(enforce=False).heartbeat(task_id, owner or self.actor, epoch, ttl=ttl))

    def task_start(self, task_id: int, epoch: int, owner: str | None = None) -> dict[str, Any]:
        return jsonable(self._tasks().start(task_id, owner or self.actor, epoch))

    def task_complete(self, task_id: int, epoch: int, owner: str | None = None, result: Any = None) -> dict[str, Any]:
        return jsonable(self._tasks().complete(task_id, owner or self.actor, epoch, result=result))

    def task_fail(
        self, task_id: int, epoch: int, owner: str | None = None, reason: str = "", retryable: bool = False
    ) -> dict[str, Any]:
        return jsonable(
            self._tasks(enforce=False).fail(task_id, owner or self.actor, epoch, reason=reason, retryable=retryable)
        )

    def task_release(self, task_id: int, epoch: int, owner: str | None = None, reason: str = "") -> dict[str, Any]:
        return jsonable(self._tasks().release(task_id, owner or self.actor, epoch, reason=reason))

    def task_attach(
        self,
        task_id: int,
        epoch: int,
        content: str,
        name: str,
        kind: str = "log",
        media_type: str = "text/plain",
        owner: str | None = None,
    ) -> dict[str, Any]:
        return jsonable(
            self._evidence().put(
                content.encode("utf-8"),
                kind=kind,
                name=name,
                media_type=media_type,
                task_id=task_id,
                owner=owner or self.actor,
                lease_epoch=epoch,
            )
        )

    def task_evidence(self, task_id: int) -> list[dict[str, Any]]:
        self._queries().get(task_id)  # NotFound for a wrong id, not an empty list
        return jsonable(self._evidence().list(task_id))

    def task_diff(self, task_id: int) -> dict[str, Any]:
        from aictl.sandbox.workspace import WorkspaceManager

        if self.settings.project_dir is None:
            raise UsageError(
                "no project: a diff needs the repository", hint="serve from the project: aictl -C DIR mcp serve"
            )
        ws = WorkspaceManager(Path(self.settings.project_dir), Path(self.settings.home) / "workspaces")
        return {"task_id": task_id, "diff": ws.diff(task_id)}

    # -- routing, policy, audit ----------------------------------------------------------------------
    def route(self, task_id: int) -> dict[str, Any]:
        from aictl.agents.router import Router

        return jsonable(Router(self.store, self.settings, policy=self.gate).explain(task_id))

    def policy_explain(
        self,
        action: str,
        ai: str | None = None,
        task_id: int | None = None,
        path: list[str] | None = None,
        command: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        from aictl.policy.engine import PolicyRequest, Resource, Subject
        from aictl.policy.engine import explain as run_explain
        from aictl.policy.schema import KNOWN_ACTIONS

        if action not in KNOWN_ACTIONS:
            raise UsageError(f"unknown action {action!r}", hint=f"use one of: {', '.join(KNOWN_ACTIONS)}")
        task, epoch = None, None
        if task_id is not None:
            from aictl.tasks.service import task_facts

            with self.store.read() as tx:
                row = tx.one("SELECT * FROM tasks WHERE id = :id", {"id": task_id})
            if row is None:
                raise NotFound(f"task {task_id} not found", hint="list tasks with the task_list tool")
            task, epoch = task_facts(row), row["lease_epoch"] or None
        paths = path or []
        request = PolicyRequest(
            subject=Subject(ai=ai, ai_labels=[], task_id=task_id, lease_epoch=epoch, actor=ai),
            action=action,
            resource=Resource(
                task=task,
                path=paths[0] if len(paths) == 1 else None,
                paths=paths if len(paths) > 1 else [],
                command=command,
            ),
            context=context or {},
        )
        return jsonable(run_explain(self.effective_policy(), request))

    def effective_policy(self) -> Any:
        from aictl.policy.merge import load_effective_policy

        if self.settings.project_dir is None:
            raise UsageError(
                "no project: the policy is the project's", hint="serve from the project: aictl -C DIR mcp serve"
            )
        return load_effective_policy(Path(self.settings.project_dir))

    def audit_log(self, task_id: int | None = None, limit: int | None = 50) -> list[dict[str, Any]]:
        return jsonable(self._queries().events(task_id=task_id, limit=limit))

    def _workflows(self) -> Any:
        from aictl.workflows.engine import WorkflowEngine

        return WorkflowEngine(self.store, self.settings, policy=self.gate)

    def workflow_list(self) -> list[dict[str, Any]]:
        from aictl.workflows.loader import listing, load_file

        if self.settings.project_dir is None:
            raise UsageError("no project: workflows live in its .ai/workflows/", hint="serve from the project")
        found = []
        for path in listing(Path(self.settings.project_dir)):
            w = load_file(path)
            found.append({"name": w.name, "description": w.description, "inputs": sorted(w.inputs)})
        return found

    def workflow_run(self, name: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a run and take its first steps; the daemon (or `aictl workflow resume`) runs its step tasks."""
        from aictl.workflows.loader import find, load_file

        project = Path(self.settings.project_dir) if self.settings.project_dir is not None else None
        engine = self._workflows()
        started = engine.start(load_file(find(project, name)), {k: str(v) for k, v in (inputs or {}).items()})
        return jsonable(engine.advance(started.id))

    def workflow_status(self, run_id: int) -> dict[str, Any]:
        return jsonable(self._workflows().get(run_id))

    def merge_status(self, into: str | None = None) -> dict[str, Any]:
        from aictl.merge.queue import MergeQueue

        return jsonable(MergeQueue(self.store, self.settings, policy=self.gate).status(into))

    def audit_verify(self) -> dict[str, Any]:
        from aictl.audit.chain import verify

        return jsonable(verify(self.store))
