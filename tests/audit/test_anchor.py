"""The chain head anchored in git: a log truncated together with its head is caught without an export."""

from __future__ import annotations

import json

from aictl.audit.anchor import ANCHOR_REF, parse_anchor
from aictl.audit.chain import verify
from aictl.cli.main import main
from aictl.store import open_store
from tests.audit.test_chain import tamper
from tests.execution.conftest import git


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def store_of(root):
    return open_store(f"sqlite:///{root / '.ai' / 'state.db'}")


def test_task_run_anchors_the_head_in_git(git_project, capsys):
    code, out, err = run(capsys, "task", "create", "t", "--lock", "x.txt", "--command", "echo hi > x.txt", "-o", "json")
    assert code == 0, err
    tid = json.loads(out)["id"]
    code, out, err = run(capsys, "task", "execute", str(tid), "--owner", "w1", "-o", "json")
    assert code == 0, out + err
    event_id, h = parse_anchor(git(git_project, "cat-file", "blob", ANCHOR_REF))
    with store_of(git_project) as store, store.read() as tx:
        last = tx.one("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1")
    assert (event_id, h) == (last["id"], last["hash"])  # the run's last event, completion included
    code, _, err = run(capsys, "audit", "verify")
    assert code == 0 and f"anchor event {event_id}" in err


def _three_tasks_anchored(capsys):
    for title in ("a", "b", "c"):
        assert run(capsys, "task", "create", title)[0] == 0
    code, out, _ = run(capsys, "audit", "anchor", "-o", "json")
    assert code == 0 and json.loads(out)["event_id"] == 3


def test_tail_deleted_with_head_rewritten_is_caught_by_the_anchor(git_project, capsys):
    _three_tasks_anchored(capsys)
    with store_of(git_project) as store:
        with store.read() as tx:
            first = tx.one("SELECT hash FROM events WHERE id = 1")
        tamper(
            store,
            "DELETE FROM events WHERE id > 1",
            f"UPDATE audit_head SET last_id = 1, last_hash = '{first['hash']}' WHERE id = 1",
        )
        assert verify(store).ok  # self-consistent inside the database …
    code, _, err = run(capsys, "audit", "verify")
    assert code == 1 and "event 3, anchored in git" in err and "truncated" in err  # … but not against git


def test_tail_and_head_row_deleted_together_names_the_anchor(git_project, capsys):
    _three_tasks_anchored(capsys)
    with store_of(git_project) as store:
        tamper(store, "DELETE FROM events WHERE id > 1", "DELETE FROM audit_head")
    code, _, err = run(capsys, "audit", "verify")
    assert code == 1 and "event 3, anchored in git" in err


def test_rewritten_anchored_event_is_caught(git_project, capsys):
    from aictl.audit.events import event_hash

    _three_tasks_anchored(capsys)
    with store_of(git_project) as store:
        with store.read() as tx:
            rows = tx.all("SELECT * FROM events ORDER BY id")
        rows[2]["actor"] = "forged"
        h = event_hash(rows[1]["hash"], rows[2])
        tamper(
            store,
            f"UPDATE events SET actor = 'forged', hash = '{h}' WHERE id = 3",
            f"UPDATE audit_head SET last_hash = '{h}' WHERE id = 1",
        )
        assert verify(store).ok
    code, _, err = run(capsys, "audit", "verify")
    assert code == 1 and "event 3 differs from its hash anchored in git" in err
