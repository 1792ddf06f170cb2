"""The schema in SQLModel, for Python users who want ORM access to the store.

aictl's own hot paths use plain SQL (see aictl.store.base for why); the
migrations in aictl.store.schema create these tables, and
tests/store/test_tables.py fails if the two ever disagree. Importing this
module costs ~0.6 s (SQLAlchemy), so nothing on the CLI's path imports it.

    from sqlmodel import Session, create_engine, select
    from aictl.store.tables import TaskRow
    engine = create_engine("sqlite:///.ai/state.db")
    with Session(engine) as s:
        for t in s.exec(select(TaskRow).where(TaskRow.status == "failed")):
            print(t.id, t.title)
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class TaskRow(SQLModel, table=True):
    __tablename__ = "tasks"

    id: int | None = Field(default=None, primary_key=True)
    title: str
    description: str = ""
    type: str = "task"
    priority: int = 0
    status: str
    labels: str = "[]"  # JSON array
    required_capabilities: str = "[]"  # JSON array
    lock_paths: str = "[]"  # JSON array of globs
    exclusive: int = 0
    owner: str | None = None
    lease_epoch: int = 0
    lease_expires_at: float | None = None
    heartbeat_at: float | None = None
    attempts: int = 0
    max_attempts: int = 3
    next_run_at: float | None = None
    created_at: float
    updated_at: float
    result: str | None = None  # JSON
    command: str | None = None  # shell command run by the `command` connector
    verify: str | None = None  # verification command run after the agent
    ai: str | None = None  # the AI the current/last claim was made for
    activity: str | None = None  # the running agent's latest action
    schedule_id: int | None = None  # the schedule that created this task


class TaskDepRow(SQLModel, table=True):
    __tablename__ = "task_deps"

    task_id: int = Field(primary_key=True, foreign_key="tasks.id")
    depends_on: int = Field(primary_key=True, foreign_key="tasks.id")


class TaskConflictRow(SQLModel, table=True):
    __tablename__ = "task_conflicts"

    task_id: int = Field(primary_key=True, foreign_key="tasks.id")
    other_id: int = Field(primary_key=True, foreign_key="tasks.id")


class LockRow(SQLModel, table=True):
    __tablename__ = "locks"

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="tasks.id")
    pattern: str
    owner: str
    lease_epoch: int
    acquired_at: float


class EventRow(SQLModel, table=True):
    __tablename__ = "events"

    id: int | None = Field(default=None, primary_key=True)
    ts: float
    actor: str
    action: str
    task_id: int | None = None
    lease_epoch: int | None = None
    before: str | None = None
    after: str | None = None
    data: str | None = None
    prev_hash: str | None = None
    hash: str | None = None  # sha256(prev_hash || canonical_json(event))


class AuditHeadRow(SQLModel, table=True):
    __tablename__ = "audit_head"

    id: int | None = Field(default=None, primary_key=True)
    last_id: int
    last_hash: str


class DecisionRow(SQLModel, table=True):
    """A Policy Decision Record."""

    __tablename__ = "decisions"

    decision_id: str = Field(primary_key=True)
    ts: float
    ai: str | None = None
    actor: str | None = None
    task_id: int | None = None
    lease_epoch: int | None = None
    action: str
    resource: str  # JSON
    input: str  # JSON, secrets masked
    effect: str
    matched_rules: str  # JSON
    reasons: str  # JSON
    limits: str  # JSON
    sources: str  # JSON: [{path, sha256}]
    policy_digest: str  # sha256 over the sources: "same policy" for replay and de-duplication
    eval_ms: float
    enforced: int = 1


class EvidenceRow(SQLModel, table=True):
    __tablename__ = "evidence"

    id: int | None = Field(default=None, primary_key=True)
    task_id: int | None = Field(default=None, foreign_key="tasks.id")
    lease_epoch: int | None = None
    kind: str
    name: str
    digest: str
    size: int
    media_type: str
    summary: str | None = None  # JSON
    created_at: float


class EvidenceBlobRow(SQLModel, table=True):
    __tablename__ = "evidence_blobs"

    digest: str = Field(primary_key=True)
    content: bytes


class AIRow(SQLModel, table=True):
    __tablename__ = "ais"

    id: str = Field(primary_key=True)
    connector: str
    model: str | None = None
    capabilities: str = "[]"  # JSON array
    labels: str = "[]"  # JSON array
    max_concurrency: int = 1
    config: str = "{}"  # JSON object; secrets only by env var name
    enabled: int = 1
    paused_until: float | None = None
    pause_reason: str | None = None
    last_assigned_at: float | None = None
    created_at: float
    updated_at: float


class ScheduleRow(SQLModel, table=True):
    __tablename__ = "schedules"

    id: int | None = Field(default=None, primary_key=True)
    cron: str
    spec: str  # JSON TaskSpec of the task each firing creates
    enabled: int = 1
    next_at: float
    last_task_id: int | None = None
    created_at: float
    updated_at: float


class DaemonRow(SQLModel, table=True):
    __tablename__ = "daemons"

    id: str = Field(primary_key=True)
    host: str
    pid: int
    project: str | None = None
    status: str
    started_at: float
    heartbeat_at: float
    stopped_at: float | None = None
    info: str = "{}"  # JSON


class MessageRow(SQLModel, table=True):
    __tablename__ = "messages"

    id: int | None = Field(default=None, primary_key=True)
    to_task_id: int | None = None
    to_ai: str | None = None
    from_task_id: int | None = None
    sender: str
    body: str
    created_at: float
    read_at: float | None = None  # None: not read yet (a task's next attempt gets it in its prompt)
    read_epoch: int | None = None


class QueueLeaseRow(SQLModel, table=True):
    __tablename__ = "queue_leases"

    name: str = Field(primary_key=True)
    owner: str
    epoch: int
    expires_at: float


class WorkflowRunRow(SQLModel, table=True):
    __tablename__ = "workflow_runs"

    id: int | None = Field(default=None, primary_key=True)
    workflow: str
    source: str = ""
    definition: str  # JSON: the workflow as loaded when the run started
    inputs: str = "{}"  # JSON
    status: str  # running, succeeded, failed, cancelled
    reason: str | None = None
    actor: str
    created_at: float
    updated_at: float
    finished_at: float | None = None


class WorkflowStepRow(SQLModel, table=True):
    __tablename__ = "workflow_steps"

    run_id: int = Field(primary_key=True, foreign_key="workflow_runs.id")
    step_id: str = Field(primary_key=True)
    status: str  # pending, running, waiting_approval, succeeded, failed, skipped, cancelled
    attempt: int = 0
    task_id: int | None = None  # the current attempt's task
    tasks: str = "[]"  # JSON: every task the step made, in order
    outputs: str = "{}"  # JSON
    facts: str = "{}"  # JSON: the last attempt's verify and summary (what `steps.<id>.verify` reads)
    reason: str | None = None  # why it is skipped, waiting or failed
    feedback: str | None = None  # the previous attempt's evidence, for the next prompt
    started_at: float | None = None
    updated_at: float


class SchemaMigrationRow(SQLModel, table=True):
    __tablename__ = "schema_migrations"

    version: int = Field(primary_key=True)
    name: str
    applied_at: float
