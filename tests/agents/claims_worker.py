"""A worker process for the Claims race test: `python -m tests.agents.claims_worker URL OWNER AI`.

It prints {"ready": true}, waits for "go" on stdin (so all workers start together and
really race), then claims through aictl.tasks.claims for the registered AI — its
concurrency limit applies — until a claim returns None, never letting go of a task.
It prints {"claimed": [task ids], "busy": n}.
"""

from __future__ import annotations

import json
import sys

from aictl.agents.router import Router
from aictl.config import Settings
from aictl.domain.errors import StoreError
from aictl.store import open_store
from aictl.tasks.claims import ClaimRequest, Claims


def main(url: str, owner: str, ai: str) -> None:
    store = open_store(url)
    settings = Settings(database_url=url, actor=owner, lease_ttl=3600)
    claims = Claims(store, settings, ranker=Router(store, settings))
    print(json.dumps({"ready": True}), flush=True)
    assert sys.stdin.readline().strip() == "go"
    claimed, busy = [], 0
    while True:
        try:
            got = claims.claim(ClaimRequest(owner=owner, ai=ai))
        except StoreError as e:  # SQLite: BEGIN IMMEDIATE gave up under a storm of writers; nothing was done
            if "busy" not in e.message:
                raise
            busy += 1
            continue
        if got is None:
            break
        claimed.append(got.task.id)
    print(json.dumps({"claimed": claimed, "busy": busy}), flush=True)
    store.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
