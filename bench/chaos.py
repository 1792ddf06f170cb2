"""Chaos run: W worker processes drain T command tasks with overlapping locks while workers are SIGKILLed and
SIGSTOPped at random, on SQLite and on PostgreSQL (a throwaway server). Each run is judged by tests/chaos.py
(every task done and completed exactly once, no overlapping lock holds, each result commit holds its file,
the audit chain verifies); then the same queue without chaos is the baseline. Prints one JSON object.

    python bench/chaos.py [--workers 6] [--tasks 300] [--ttl 2] [--strike-every 1.0] [--backend sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import emit, git_state, log, machine


def main() -> None:
    from tests import chaos

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--ttl", type=float, default=2.0)
    ap.add_argument("--strike-every", type=float, default=1.0)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args()
    results = {}
    pg = None
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    try:
        for backend in backends:
            for mode, strike in (("calm", float("inf")), ("chaos", args.strike_every)):
                url = None
                if backend == "postgres":
                    from tests.pgserver import PgServer

                    pg = pg or PgServer().start()
                    url = pg.create_database()
                with tempfile.TemporaryDirectory(prefix=f"aictl-chaos-{backend}-") as tmp:
                    log(f"{backend} {mode}: {args.workers} workers, {args.tasks} tasks")
                    r = chaos.run(
                        Path(tmp) / "repo",
                        url,
                        workers=args.workers,
                        tasks=args.tasks,
                        ttl=args.ttl,
                        strike_every_s=strike,
                        seed=7,
                    )
                r["tasks_per_s"] = round(r["tasks"] / r["wall_s"], 2)
                results[f"{backend}_{mode}"] = r
            results[f"{backend}_chaos_vs_calm_wall"] = round(
                results[f"{backend}_chaos"]["wall_s"] / results[f"{backend}_calm"]["wall_s"], 2
            )
    finally:
        if pg is not None:
            pg.stop()
    emit(
        {
            "bench": "chaos",
            **results,
            "invariants": "all held (each run judged)",
            "machine": machine(),
            "git": git_state(),
        }
    )


if __name__ == "__main__":
    main()
