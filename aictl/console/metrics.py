"""Prometheus metrics read from the store at scrape time: the console's `/metrics` and each daemon's `--metrics-port`.

Everything is derived from the record, so every endpoint of one store reports the same numbers
(scrape one, or take max() across them): tasks by status and the merge queue's depth are counted
now; counters come from the audit log, read incrementally (only events after the last one seen):
claims (`claim`), lease expiries (`lease_expired`, by what became of the task) and reap sweeps
(one sweep writes its expiries with one timestamp), policy decisions (`decision`: effect, action),
run durations (each run's `run.json` evidence, per connector) and tokens and cost per AI (the
usage evidence, as `aictl usage` reads it). A new endpoint starts by reading the whole log once.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from aictl.agents.usage import UsageLedger
from aictl.audit.evidence import EvidenceStore
from aictl.store.base import Store
from aictl.tasks.queries import TaskQueries, status_counts

STATUSES = ("queued", "blocked", "claimed", "running", "awaiting_approval", "done", "merged", "failed", "cancelled")
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
BATCH = 5000


class _Histogram:
    def __init__(self) -> None:
        self.buckets = [0] * len(DURATION_BUCKETS)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, edge in enumerate(DURATION_BUCKETS):
            if value <= edge:
                self.buckets[i] += 1

    def cumulative(self) -> list[tuple[str, int]]:
        return [(str(edge), n) for edge, n in zip(DURATION_BUCKETS, self.buckets, strict=True)] + [("+Inf", self.count)]


class StoreCollector:
    """A prometheus_client collector; `store()` lends a store connection for one scrape (a context manager)."""

    def __init__(self, store: Callable[[], AbstractContextManager[Store]], home: Path | None):
        self._store = store
        self.home = home
        self._lock = threading.Lock()
        self._after = 0
        self.claims = 0
        self.expiries: Counter[str] = Counter()
        self._reap_times: set[tuple[float, str]] = set()
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.durations: dict[str, _Histogram] = {}
        self.ledger = UsageLedger(home)

    def collect(self) -> Iterator[Metric]:
        with self._lock, self._store() as store:
            self._read_events(store)
            runs = self.ledger.runs(store)
            with store.read() as tx:
                counts = status_counts(tx)
        yield from self._families(counts, runs)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # metrics are read at scrape time; registering must not query the store

    def _read_events(self, store: Store) -> None:
        q = TaskQueries(store)
        while True:
            events = q.events(after_id=self._after, first=BATCH)
            if not events:
                return
            runs: list[str] = []
            for e in events:
                data = e.data or {}
                if e.action == "claim":
                    self.claims += 1
                elif e.action == "lease_expired":
                    self.expiries[str((e.after or {}).get("status") or "unknown")] += 1
                    self._reap_times.add((e.ts, e.actor))
                elif e.action == "decision":
                    self.decisions[(str(data.get("effect")), str(data.get("policy_action")))] += 1
                elif e.action == "evidence" and data.get("kind") == "run" and isinstance(data.get("digest"), str):
                    runs.append(data["digest"])
                self._after = e.id
            if runs:
                self._observe_runs(store, runs)

    def _observe_runs(self, store: Store, digests: list[str]) -> None:
        blobs = EvidenceStore(store, self.home).contents(digests)
        for digest in digests:
            blob = blobs.get(digest)
            try:
                run = json.loads(blob) if blob is not None else None
            except ValueError:
                run = None
            if not isinstance(run, dict) or not isinstance(run.get("duration_s"), (int, float)):
                continue
            connector = str(run.get("connector") or "unknown")[:64]
            self.durations.setdefault(connector, _Histogram()).observe(float(run["duration_s"]))

    def _families(self, counts: dict[str, int], runs: list[Any]) -> Iterator[Metric]:
        tasks = GaugeMetricFamily("aictl_tasks", "Tasks by status", labels=["status"])
        for status in sorted(set(STATUSES) | set(counts)):
            tasks.add_metric([status], counts.get(status, 0))
        yield tasks
        yield GaugeMetricFamily(
            "aictl_merge_queue_depth", "Done tasks waiting for the merge queue", value=counts.get("done", 0)
        )
        yield CounterMetricFamily("aictl_claims", "Task claims", value=self.claims)
        expiries = CounterMetricFamily("aictl_lease_expiries", "Expired leases reaped, by outcome", labels=["outcome"])
        for outcome, n in sorted(self.expiries.items()):
            expiries.add_metric([outcome], n)
        yield expiries
        yield CounterMetricFamily("aictl_reaps", "Reap sweeps that found expired leases", value=len(self._reap_times))
        decisions = CounterMetricFamily(
            "aictl_policy_decisions", "Policy decisions by effect and action", labels=["effect", "action"]
        )
        for (effect, action), n in sorted(self.decisions.items()):
            decisions.add_metric([effect, action], n)
        yield decisions
        durations = HistogramMetricFamily(
            "aictl_run_duration_seconds", "Run durations per connector", labels=["connector"], unit="seconds"
        )
        for connector, h in sorted(self.durations.items()):
            durations.add_metric([connector], h.cumulative(), sum_value=h.sum)
        yield durations
        tokens = CounterMetricFamily("aictl_tokens", "Tokens used per AI and kind", labels=["ai", "kind"])
        cost = CounterMetricFamily("aictl_cost_usd", "Cost in USD per AI (priced runs only)", labels=["ai"])
        unpriced = CounterMetricFamily("aictl_runs_without_cost", "Runs whose cost is unknown, per AI", labels=["ai"])
        per_ai: dict[str, dict[str, float]] = {}
        for run in runs:
            row = per_ai.setdefault(
                run.ai or "-", {"input": 0, "output": 0, "cache_read": 0, "cost": 0.0, "unpriced": 0}
            )
            row["input"] += run.input_tokens
            row["output"] += run.output_tokens
            row["cache_read"] += run.cache_read_tokens
            if run.cost_usd is None:
                row["unpriced"] += 1
            else:
                row["cost"] += run.cost_usd
        for ai, row in sorted(per_ai.items()):
            for kind in ("input", "output", "cache_read"):
                tokens.add_metric([ai, kind], row[kind])
            cost.add_metric([ai], row["cost"])
            unpriced.add_metric([ai], row["unpriced"])
        yield tokens
        yield cost
        yield unpriced


def serve_metrics(url: str, home: Path | None, host: str, port: int) -> tuple[Any, int]:
    """A metrics-only HTTP server in a background thread (the daemon's `--metrics-port`): (server, bound port).

    Each scrape opens its own store connection and closes it (the server answers from a new thread each time)."""
    from prometheus_client import CollectorRegistry, start_http_server

    from aictl.store import open_store

    @contextlib.contextmanager
    def borrow() -> Iterator[Store]:
        store = open_store(url, migrate=False)
        try:
            yield store
        finally:
            store.close()

    registry = CollectorRegistry()
    registry.register(StoreCollector(borrow, home))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, server.server_port


__all__ = ["StoreCollector", "serve_metrics"]
