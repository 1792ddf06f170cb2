"""The console: first paint of the queue view, state change → open page latency, idle CPU with one page open.

* first paint: a project with `--tasks` tasks (default 10,000: queued ones, a chain of blocked ones, some
  held with locks), `GET /` against a real `aictl console` process, `--runs` times after one warm-up:
  the whole request on loopback (`http_ms`) and, in-process, the server's own work for the page
  (`render_ms`: the reads and the template). Baseline, same server and middleware: `GET /static/console.css`
  (the HTTP floor) and the bare SQL the page cannot do without (counts by status and the first 50 rows of
  each status, with sqlite3 directly).
* state change → page: an event stream of the queue view is open (as a browser's EventSource); a task is
  created in this process; the time until the stream delivers an update that shows it. Baseline: the
  poll interval (a change waits for the next poll) plus the in-process render of the fragment.
* idle CPU: the console process's utime+stime from /proc over `--idle-s` seconds, as % of one core, with
  one stream open and nothing changing; and the same with no page open (the poller sleeps then).

    python bench/console.py [--tasks 10000] [--runs 20] [--changes 15] [--idle-s 30]
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ROOT, emit, log, machine, ms_stats

GOALS = {"first_paint_ms": 300, "change_to_page_ms": 500, "idle_cpu_percent": 1.0}


def make_project(base: Path, n: int) -> Path:
    from aictl.config import load_settings
    from aictl.store import open_store
    from aictl.tasks.service import TaskService, TaskSpec

    root = base / "repo"
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "aictl", "init"], cwd=root, check=True, capture_output=True)
    settings = load_settings(str(root))
    store = open_store(settings.resolved_database_url)
    svc = TaskService(store, settings)
    chain = min(200, n // 10)
    first = [TaskSpec(title="root of a chain", key="root")]
    for i in range(chain - 1):  # a chain of blocked tasks under the first one (keys resolve within a batch)
        first.append(TaskSpec(title=f"chained {i}", key=f"c{i}", depends_on=["root" if i == 0 else f"c{i - 1}"]))
    svc.create_many(first)
    rest = [TaskSpec(title=f"queued task {i}", priority=i % 5) for i in range(n - chain)]
    for start in range(0, len(rest), 2000):
        svc.create_many(rest[start : start + 2000])
    for i in range(5):  # some held tasks with locks
        t = svc.create(TaskSpec(title=f"held {i}", lock_paths=[f"src/mod{i}/**"]))
        svc.claim(f"worker-{i}", task_id=t.id, ttl=3600)
    store.close()
    return root


def start_console(root: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aictl", "console", "--port", "0"],
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    m = re.search(r"(http://\S+?)/?$", line.strip())
    if not m:
        proc.kill()
        raise SystemExit(f"console did not start: {line}{proc.stderr.read()}")
    return proc, m.group(1)


def first_paint(root: Path, url: str, runs: int) -> dict:
    import httpx

    from aictl.config import load_settings
    from aictl.console.app import Console
    from aictl.console.security import Guard

    def timed(path: str) -> list[float]:
        out = []
        with httpx.Client(timeout=60) as c:
            c.get(url + path)
            for _ in range(runs):
                t0 = time.perf_counter()
                r = c.get(url + path)
                out.append(time.perf_counter() - t0)
                assert r.status_code == 200
        return out

    http = timed("/")
    floor = timed("/static/console.css")
    settings = load_settings(str(root))
    console = Console(settings, Guard(host="127.0.0.1", tokens={}, actor="bench"))
    console.page("queue", {}, "bench", "Queue")
    render = []
    for _ in range(runs):
        t0 = time.perf_counter()
        console.page("queue", {}, "bench", "Queue")
        render.append(time.perf_counter() - t0)
    db = sqlite3.connect(str(root / ".ai" / "state.db"))
    bare = []
    for _ in range(runs):
        t0 = time.perf_counter()
        db.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetchall()
        for status in ("queued", "blocked", "claimed", "running", "awaiting_approval", "done", "failed"):
            db.execute("SELECT * FROM tasks WHERE status = ? ORDER BY id LIMIT 50", (status,)).fetchall()
        bare.append(time.perf_counter() - t0)
    db.close()
    console.stores.close()
    return {
        "http_ms": ms_stats(http),
        "render_ms": ms_stats(render),
        "baseline_static_file_http_ms": ms_stats(floor),
        "baseline_bare_sql_ms": ms_stats(bare),
    }


class Stream:
    """An open event stream of one view, as the browser's EventSource reads it."""

    def __init__(self, url: str, view: str = "queue"):
        import httpx

        self.updates: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._client = httpx.Client(timeout=None)
        self._url, self._view = url, view
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with self._client.stream("GET", self._url + "/events", params={"view": self._view}) as r:
                data: list[str] = []
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        data.append(line[6:])
                    elif line == "" and data:
                        with self._cond:
                            self.updates.append((time.perf_counter(), "\n".join(data)))
                            self._cond.notify_all()
                        data = []
        except Exception:  # noqa: BLE001 - closed by close(); the figures come from what was read
            pass

    def wait_for(self, needle: str, after: int, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, html in self.updates[after:]:
                    if needle in html:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"no update with {needle!r} within {timeout}s")
                self._cond.wait(left)

    def close(self) -> None:
        self._client.close()


def change_latency(root: Path, url: str, changes: int) -> dict:
    from aictl.config import load_settings
    from aictl.console.app import Console
    from aictl.console.changes import POLL_S
    from aictl.console.security import Guard
    from aictl.store import open_store
    from aictl.tasks.service import TaskService, TaskSpec

    settings = load_settings(str(root))
    store = open_store(settings.resolved_database_url)
    svc = TaskService(store, settings)
    stream = Stream(url)
    stream.wait_for('id="counts"', 0)
    lat = []
    try:
        for i in range(changes):
            time.sleep(0.3 + (i % 5) * 0.07)  # land at different points of the poll cycle
            seen = len(stream.updates)
            svc.create(TaskSpec(title=f"change {i}"))
            t0 = time.perf_counter()  # committed: from here the console may see it
            with store.read() as tx:
                queued = tx.one("SELECT COUNT(*) AS n FROM tasks WHERE status = 'queued'")["n"]
            at = stream.wait_for(f'data-status="queued">queued <b>{queued}</b>', seen)
            lat.append(at - t0)
    finally:
        stream.close()
        store.close()
    console = Console(settings, Guard(host="127.0.0.1", tokens={}, actor="bench"))
    render = []
    for _ in range(5):
        t0 = time.perf_counter()
        console.fragment("queue", {}, "bench")
        render.append(time.perf_counter() - t0)
    console.stores.close()
    return {
        "changes": changes,
        "change_to_page_ms": ms_stats(lat),
        "baseline_poll_interval_ms": POLL_S * 1000,
        "baseline_fragment_render_ms": ms_stats(render),
    }


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def idle_cpu(pid: int, url: str, seconds: float) -> dict:
    hz = os.sysconf("SC_CLK_TCK")

    def measure() -> dict:
        c0, t0 = cpu_ticks(pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_ticks(pid), time.monotonic()
        return {"seconds": round(t1 - t0, 1), "cpu_percent_of_one_core": round((c1 - c0) / hz / (t1 - t0) * 100, 3)}

    stream = Stream(url)
    stream.wait_for('id="counts"', 0)
    time.sleep(2)
    with_page = measure()
    stream.close()
    time.sleep(2)
    no_page = measure()
    return {"one_page_open": with_page, "baseline_no_page_open": no_page, "clock_ticks_per_s": hz}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--changes", type=int, default=15)
    ap.add_argument("--idle-s", type=float, default=30.0)
    args = ap.parse_args()
    os.environ.setdefault("AICTL_CONFIG_DIR", tempfile.mkdtemp(prefix="aictl-bench-conf-"))
    with tempfile.TemporaryDirectory(prefix="aictl-bench-console-") as tmp:
        log(f"filling a project with {args.tasks} tasks")
        root = make_project(Path(tmp), args.tasks)
        proc, url = start_console(root)
        try:
            log(f"first paint of the queue view, {args.runs} runs")
            paint = first_paint(root, url, args.runs)
            log(f"state change -> open page, {args.changes} changes")
            change = change_latency(root, url, args.changes)
            log(f"idle CPU over {args.idle_s:g}s with one page open, then with none")
            idle = idle_cpu(proc.pid, url, args.idle_s)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    emit(
        {
            "benchmark": "console",
            "tasks": args.tasks,
            "goals": GOALS,
            "first_paint": paint,
            "change": change,
            "idle": idle,
            "machine": machine({"root": ROOT}),
        }
    )


if __name__ == "__main__":
    main()
