"""A sweeper process for the schedule tests: `python -m tests.tasks.schedule_worker URL NOW ROUNDS`.

Prints {"ready": true}, waits for "go" on stdin, runs fire_due(now=NOW) ROUNDS times over
its own connection, and prints {"fired": [task ids]}.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from aictl.config import Settings
from aictl.store import open_store
from aictl.tasks.schedules import fire_due

REPO = Path(__file__).resolve().parents[2]


def start(url: str, now: float, rounds: int, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tasks.schedule_worker", url, repr(now), str(rounds), name],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def main() -> None:
    url, now, rounds, name = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    store = open_store(url)
    settings = Settings(database_url=url, actor=name)
    print(json.dumps({"ready": True}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    fired: list[int] = []
    for _ in range(rounds):
        fired += fire_due(store, settings, now)
    print(json.dumps({"fired": fired}), flush=True)
    store.close()


if __name__ == "__main__":
    main()
