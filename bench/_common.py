"""Helpers shared by the benchmarks: repo path, machine description, stats, progress.

Benchmarks print exactly one JSON object on stdout; everything else goes to stderr.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # so `import aictl` and `from tests.pgserver import PgServer` work
    sys.path.insert(0, ROOT)

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def emit(obj: dict[str, Any]) -> None:
    json.dump(obj, sys.stdout, indent=1)
    sys.stdout.write("\n")
    sys.stdout.flush()


def git_state() -> dict[str, Any]:
    """Which code was measured: HEAD and whether aictl/ had uncommitted changes."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "aictl_dirty": bool(git("status", "--porcelain", "--", "aictl")),
    }


def machine(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),  # other work on the machine skews figures
    }
    try:
        import psycopg

        info["psycopg"] = psycopg.__version__
    except ImportError:
        pass
    info.update(git_state())
    info.update(extra or {})
    return info


def ms_stats(samples_s: list[float]) -> dict[str, float]:
    """median / p95 / min / max of durations given in seconds, in milliseconds."""
    xs = sorted(samples_s)
    p95 = xs[min(len(xs) - 1, max(0, round(0.95 * len(xs)) - 1))]
    return {
        "median_ms": round(statistics.median(xs) * 1e3, 3),
        "p95_ms": round(p95 * 1e3, 3),
        "min_ms": round(xs[0] * 1e3, 3),
        "max_ms": round(xs[-1] * 1e3, 3),
        "n": len(xs),
    }


def top_functions(prof_path: str, n: int = 12, key: str = "tottime") -> list[dict[str, Any]]:
    """The n hottest functions of a cProfile dump, as JSON-able rows."""
    import pstats

    st = pstats.Stats(prof_path)
    rows = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        short = file.replace(ROOT + os.sep, "")
        if "site-packages" in short:
            short = short.split("site-packages" + os.sep, 1)[1]
        elif short.startswith(sys.base_prefix):
            short = "stdlib:" + os.path.basename(short)
        rows.append(
            {"function": f"{short}:{line}({name})", "calls": nc, "tottime_s": round(tt, 4), "cumtime_s": round(ct, 4)}
        )
    rows.sort(key=lambda r: r["tottime_s" if key == "tottime" else "cumtime_s"], reverse=True)
    return rows[:n]


def parse_int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]
