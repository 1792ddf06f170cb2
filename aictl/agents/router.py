"""The router: which registered AI takes a task, and why every other one does not.

An AI is eligible for a task when all of these hold:

- it is enabled, and not paused by a rate or usage limit (`paused_until` in the future);
- it has every capability the task requires;
- every task label `ai:<x>` names it: x is its id or one of its labels (other labels are free-form);
- it holds fewer tasks than its `max_concurrency`;
- a quick health check passes (CLI binary present, API key variable set; ollama: the model fits the GPU);
- the policy allows it to `claim` the task (checked, not recorded: routing is a question).

Eligible AIs are ranked least busy first (held / max_concurrency), then round robin
(the one assigned longest ago, never-assigned first), then by id. The router only
ranks (`explain`, `pick`, `rank`): aictl.tasks.claims claims for the ranked AIs, and
`TaskService.claim(ai=…, ai_limit=…)` re-checks labels, capabilities and the
concurrency limit inside the claim transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from aictl.agents.registry import is_paused, row_to_ai
from aictl.domain.errors import NotFound
from aictl.domain.models import AIRecord, Task
from aictl.store.base import Store
from aictl.tasks.claims import Ranking

if TYPE_CHECKING:
    from aictl.config import Settings
    from aictl.policy.gate import PolicyGate

GPU_CACHE_S = 5.0  # GPU free memory changes as models load; ask NVML again after this
SIZE_CACHE_S = 60.0


class Candidate(BaseModel):
    """One AI, judged for one task."""

    ai: str
    connector: str
    model: str | None = None
    eligible: bool
    reasons: list[str] = Field(default_factory=list)  # why not (empty when eligible)
    notes: list[str] = Field(default_factory=list)  # worth knowing either way ("no GPU: runs on CPU")
    running: int = 0
    max_concurrency: int = 1
    last_assigned_at: float | None = None
    rank: int | None = None  # 1 = would be chosen


class Route(BaseModel):
    task_id: int
    title: str
    status: str
    chosen: str | None = None
    candidates: list[Candidate] = Field(default_factory=list)

    def refusals(self) -> str:
        """'claude-1: missing capability gpu; codex-1: rate-limited until 12:00'."""
        if not self.candidates:
            return "no AI is registered"
        return "; ".join(f"{c.ai}: {', '.join(c.reasons)}" for c in self.candidates if not c.eligible)

    def why_none(self) -> str:
        return f"no AI can take task {self.task_id}: {self.refusals()}"


def when(ts: float, now: float) -> str:
    """A reset time for people: the local clock time when it is today, the date too otherwise."""
    dt, today = datetime.fromtimestamp(ts), datetime.fromtimestamp(now)
    return dt.strftime("%H:%M:%S") if dt.date() == today.date() else dt.strftime("%Y-%m-%d %H:%M:%S")


def ai_label_requirements(task_labels: Iterable[str]) -> list[str]:
    return [label[3:] for label in task_labels if label.startswith("ai:")]


class Router:
    def __init__(
        self,
        store: Store,
        settings: Settings | None = None,
        *,
        policy: PolicyGate | None = None,
        clock: Callable[[], float] = time.time,
        gpu_info: Callable[[], Any] | None = None,
        model_size: Callable[[AIRecord], float | None] | None = None,
    ):
        self.store = store
        self.settings = settings
        self.policy = policy  # aictl.policy.gate.PolicyGate or None (no policy: nothing to refuse)
        self.clock = clock
        self._gpu_info = gpu_info
        self._model_size = model_size
        self._gpu_cache: tuple[float, Any] | None = None
        self._size_cache: dict[str, tuple[float, float | None]] = {}

    # -- inputs ------------------------------------------------------------------

    def _snapshot(self, task_ids: list[int] | None = None) -> tuple[list[dict], dict[str, int], dict[int, dict]]:
        """(AI rows, held tasks per AI, task rows by id) in one read transaction."""
        from aictl.agents.registry import Registry
        from aictl.tasks.queries import task_rows

        with self.store.read() as tx:
            ais = tx.all("SELECT * FROM ais ORDER BY id")
            running = Registry(self.store).running_counts(tx)
            rows = task_rows(tx, task_ids or [])
        return ais, running, rows

    def _gpu(self) -> Any:
        now = time.monotonic()
        if self._gpu_cache is None or now - self._gpu_cache[0] > GPU_CACHE_S:
            if self._gpu_info is not None:
                report = self._gpu_info()
            else:
                from aictl.agents.gpu import gpu_info

                report = gpu_info()
            self._gpu_cache = (now, report)
        return self._gpu_cache[1]

    def _size_gb(self, ai: AIRecord) -> float | None:
        if ai.config.get("model_size_gb"):
            return float(ai.config["model_size_gb"])
        now = time.monotonic()
        hit = self._size_cache.get(ai.id)
        if hit is None or now - hit[0] > SIZE_CACHE_S:
            if self._model_size is not None:
                size = self._model_size(ai)
            else:
                from aictl.agents.health import ollama_model_size_gb

                size = ollama_model_size_gb(ai)
            hit = self._size_cache[ai.id] = (now, size)
        return hit[1]

    # -- judging -------------------------------------------------------------------

    def _judge(self, row: dict[str, Any], ai_row: dict[str, Any], running: int, now: float) -> Candidate:
        from aictl.agents.health import quick_check

        ai = row_to_ai(ai_row)
        reasons: list[str] = []
        notes: list[str] = []
        if not ai.enabled:
            reasons.append(f"disabled (enable with: aictl ai enable {ai.id})")
        if is_paused(ai, now) and (ai.pause_reason or "").startswith("unhealthy:"):  # set by the executor
            reasons.append(
                f"{ai.pause_reason} (skipped until {when(ai.paused_until or now, now)} or a passing probe:"
                f" aictl ai status {ai.id})"
            )
        elif is_paused(ai, now) and ai.paused_until is not None:
            reasons.append(
                f"rate-limited until {when(ai.paused_until, now)}"
                + (f" ({ai.pause_reason})" if ai.pause_reason else "")
            )
        missing = sorted(set(json.loads(row["required_capabilities"])) - set(ai.capabilities))
        if missing:
            reasons.append(f"missing capability {', '.join(missing)}")
        for wanted in ai_label_requirements(json.loads(row["labels"])):
            if wanted != ai.id and wanted not in ai.labels:
                reasons.append(f"task wants ai:{wanted}")
        if running >= ai.max_concurrency:
            reasons.append(f"busy: {running}/{ai.max_concurrency} tasks held")
        reasons += quick_check(ai)
        if ai.connector == "ollama" and not reasons:
            from aictl.agents.gpu import fit

            gpus = self._gpu()
            size = self._size_gb(ai) if gpus.present else None  # without a GPU the size does not matter
            ok, why = fit(size, gpus, requires_gpu=bool(ai.config.get("requires_gpu")))
            (notes if ok else reasons).append(why)
        if self.policy is not None and not reasons:
            from aictl.tasks.service import task_facts

            record = self.policy.check(
                "claim", ai=ai.id, actor=ai.id, ai_labels=ai.labels, task=task_facts(row), now=now
            )
            if record.effect != "allow":
                rules = f" [{', '.join(record.matched_rules)}]" if record.matched_rules else ""
                verdict = "needs approval" if record.effect == "require_approval" else "denies claim"
                reasons.append(f"policy {verdict}: {'; '.join(record.reasons) or record.effect}{rules}")
        return Candidate(
            ai=ai.id,
            connector=ai.connector,
            model=ai.model,
            eligible=not reasons,
            reasons=reasons,
            notes=notes,
            running=running,
            max_concurrency=ai.max_concurrency,
            last_assigned_at=ai_row.get("last_assigned_at"),
        )

    def _route(
        self,
        row: dict[str, Any],
        ais: list[dict],
        running: dict[str, int],
        now: float,
        ai_ids: Iterable[str] | None = None,
    ) -> Route:
        only = set(ai_ids) if ai_ids is not None else None
        candidates = [self._judge(row, a, running.get(a["id"], 0), now) for a in ais if only is None or a["id"] in only]
        eligible = sorted((c for c in candidates if c.eligible), key=_rank_key)
        for i, c in enumerate(eligible, 1):
            c.rank = i
        candidates.sort(key=lambda c: (c.rank is None, c.rank or 0, c.ai))
        return Route(
            task_id=row["id"],
            title=row["title"],
            status=row["status"],
            chosen=eligible[0].ai if eligible else None,
            candidates=candidates,
        )

    # -- public ----------------------------------------------------------------------

    def explain(self, task: Task | int, *, ai_ids: Iterable[str] | None = None) -> Route:
        """Every AI (or those in ai_ids), eligible or not and why; `chosen` is the one `pick` returns."""
        task_id = task if isinstance(task, int) else task.id
        ais, running, rows = self._snapshot([task_id])
        if task_id not in rows:
            raise NotFound(f"task {task_id} not found", hint="list tasks with: aictl task list")
        return self._route(rows[task_id], ais, running, self.clock(), ai_ids)

    def pick(self, task: Task | int, exclude: Iterable[str] = ()) -> AIRecord | None:
        """The AI that would take the task now (None: no eligible AI outside `exclude`)."""
        skip = set(exclude)
        route = self.explain(task)
        for c in route.candidates:
            if c.eligible and c.ai not in skip:
                return self._record(c.ai)
        return None

    def _record(self, ai_id: str) -> AIRecord:
        from aictl.agents.registry import Registry

        return Registry(self.store).get(ai_id)

    def rank(self, rows: Sequence[Mapping[str, Any]], *, ai_ids: Collection[str] | None = None) -> Iterator[Ranking]:
        """For aictl.tasks.claims: per task row, in order, the eligible AIs best first and why the others are not.

        One snapshot of the AIs for all rows; lazy, so a claimer that gets the first task judges no more.
        """
        if not rows:
            return
        ais, running, _ = self._snapshot()
        by_id = {a["id"]: a for a in ais}
        now = self.clock()
        for row in rows:
            route = self._route(dict(row), ais, running, now, ai_ids)
            yield Ranking(
                task_id=route.task_id,
                eligible=[row_to_ai(by_id[c.ai]) for c in route.candidates if c.eligible],
                refused={c.ai: c.reasons for c in route.candidates if not c.eligible},
                details={"candidates": [c.model_dump(mode="json") for c in route.candidates]},
            )

    def find(self, ai_id: str) -> AIRecord | None:
        from aictl.agents.registry import Registry

        return Registry(self.store).find(ai_id)


def _rank_key(c: Candidate) -> tuple:
    return (c.running / max(c.max_concurrency, 1), c.last_assigned_at is not None, c.last_assigned_at or 0.0, c.ai)


__all__ = ["Candidate", "Route", "Router", "ai_label_requirements"]
