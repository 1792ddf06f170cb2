"""Tamper evidence: every edit, deletion or reordering of an event is caught and named."""

from __future__ import annotations

import io
import json

import pytest

from aictl.audit.chain import export, verify
from aictl.audit.events import GENESIS, event_hash
from aictl.tasks.service import TaskSpec


@pytest.fixture
def chain(services):
    """A store with 6 events from a real task lifecycle."""
    b = services
    a = b.svc.create(TaskSpec(title="a"))
    b.svc.create(TaskSpec(title="c", depends_on=[a.id]))
    r = b.svc.claim("w")
    b.svc.start(a.id, "w", r.lease.lease_epoch)
    b.svc.complete(a.id, "w", r.lease.lease_epoch)  # + unblock of c
    assert [e.id for e in b.q.events()] == [1, 2, 3, 4, 5, 6]
    return b


def tamper(store, *sqls):
    """What an attacker with database access does: lift the append-only guard, then edit."""
    with store.write() as tx:
        if tx.dialect == "sqlite":
            tx.run("DROP TRIGGER events_no_update")
            tx.run("DROP TRIGGER events_no_delete")
        else:
            tx.run("ALTER TABLE events DISABLE TRIGGER events_append_only")
        for sql in sqls:
            tx.run(sql)


def test_intact_chain_verifies(chain):
    r = verify(chain.store)
    assert r.ok and r.checked == 6 and r.last_id == 6 and r.first_break is None
    with chain.store.read() as tx:
        rows = tx.all("SELECT * FROM events ORDER BY id")
    prev = GENESIS
    for row in rows:  # the documented formula, recomputed independently
        assert row["prev_hash"] == prev and row["hash"] == event_hash(prev, row)
        prev = row["hash"]


def test_chain_hashed_in_sql_matches_the_python_formula(services):
    """The flush numbers and hashes events in SQL (one statement on PostgreSQL); verify recomputes in Python."""
    b = services
    titles = ['naïve ✓ 日本 "quoted" \\ back\\slash', "tab\there", '{"id":-7340033}', "emoji 🎉"]
    b.svc.create_many([TaskSpec(title=t) for t in titles])  # several events in one transaction
    r = verify(b.store)
    assert r.ok and r.checked == len(titles)
    with b.store.read() as tx:
        rows = tx.all("SELECT * FROM events ORDER BY id")
    assert [json.loads(row["data"])["title"] for row in rows] == titles
    prev = GENESIS
    for row in rows:
        assert row["prev_hash"] == prev and row["hash"] == event_hash(prev, row)
        prev = row["hash"]


def test_edit_is_named(chain):
    tamper(chain.store, "UPDATE events SET actor = 'someone-else' WHERE id = 3")
    r = verify(chain.store)
    assert not r.ok and r.first_break.event_id == 3 and "modified" in r.first_break.reason


def test_edit_of_json_payload_is_named(chain):
    tamper(chain.store, 'UPDATE events SET after = \'{"status":"failed"}\' WHERE id = 5')
    assert verify(chain.store).first_break.event_id == 5


def test_delete_is_named(chain):
    tamper(chain.store, "DELETE FROM events WHERE id = 4")
    r = verify(chain.store)
    assert not r.ok and r.first_break.event_id == 5 and "event 4 is missing" in r.first_break.reason


def test_reorder_is_named(chain):
    # Swap the contents of events 2 and 3 (ids and hashes stay where they were).
    tamper(
        chain.store,
        "UPDATE events SET id = 100 WHERE id = 2",
        "UPDATE events SET id = 2 WHERE id = 3",
        "UPDATE events SET id = 3 WHERE id = 100",
    )
    r = verify(chain.store)
    assert not r.ok and r.first_break.event_id == 2


def test_truncated_tail_is_caught_by_the_head(chain):
    tamper(chain.store, "DELETE FROM events WHERE id = 6")
    r = verify(chain.store)
    assert not r.ok and "head records event 6" in r.first_break.reason


def test_full_rewrite_is_caught_only_against_an_export(chain, tmp_path):
    copy = tmp_path / "audit.jsonl"
    with copy.open("w") as f:
        assert export(chain.store, f) == 6
    lines = [json.loads(x) for x in copy.read_text().splitlines()]
    assert [x["id"] for x in lines] == [1, 2, 3, 4, 5, 6] and all(x["hash"] for x in lines)
    # A careful attacker edits event 4 and recomputes every later hash and the head.
    with chain.store.read() as tx:
        rows = tx.all("SELECT * FROM events ORDER BY id")
    rows[3]["actor"] = "forged"
    prev, stmts = rows[2]["hash"], []
    for row in rows[3:]:
        h = event_hash(prev, row)
        stmts.append(
            f"UPDATE events SET actor = '{row['actor']}', prev_hash = '{prev}', hash = '{h}' WHERE id = {row['id']}"
        )
        prev = h
    stmts.append(f"UPDATE audit_head SET last_hash = '{prev}' WHERE id = 1")
    tamper(chain.store, *stmts)
    assert verify(chain.store).ok  # the rewritten chain is self-consistent …
    r = verify(chain.store, against=copy)
    assert not r.ok and r.first_break.event_id == 4 and "rewritten" in r.first_break.reason  # … but not the copy


def test_export_since(chain):
    buf = io.StringIO()
    assert export(chain.store, buf, since_id=4) == 2


def test_cli_verify_exit_codes(project, capsys):
    from aictl.cli.main import main

    assert main(["task", "create", "x"]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["checked"] == 1
    from aictl.store import open_store

    store = open_store(f"sqlite:///{project / '.ai' / 'state.db'}")
    tamper(store, "UPDATE events SET action = 'nothing' WHERE id = 1")
    store.close()
    assert main(["audit", "verify"]) == 1
    assert "event 1 was modified" in capsys.readouterr().err
