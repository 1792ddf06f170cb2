"""Pages read over HTTP from a real console: the audit page's filters and its verify result (a tampered log is
named), a missing task, the usage page's unknown cost, and the event stream of a page."""

from __future__ import annotations

import json
import sqlite3

import httpx


def _run(proc_cli, cwd, title: str) -> int:
    tid = json.loads(
        proc_cli("task", "create", title, "--lock", "src/**", "--command", "true", "-o", "json", cwd=cwd).stdout
    )["id"]
    assert proc_cli("task", "execute", str(tid), "--owner", "w1", cwd=cwd).returncode == 0
    return tid


def test_audit_page_filters_and_names_a_tampered_event(console_project, console, proc_cli):
    first = _run(proc_cli, console_project, "first")
    _run(proc_cli, console_project, "second")
    c = console(console_project)
    with httpx.Client() as client:
        page = client.get(c.url + "/audit")
        assert page.status_code == 200 and "Audit log intact" in page.text
        claims = client.get(c.url + "/audit", params={"action": "claim"}).text
        rows = claims.split('<table id="events">')[1]
        assert rows.count("<td>claim</td>") == 2 and "<td>complete</td>" not in rows
        one = client.get(c.url + "/audit", params={"task": str(first)}).text.split('<table id="events">')[1]
        assert f">#{first}</a>" in one and f">#{first + 1}</a>" not in one
    c.stop()

    db = sqlite3.connect(console_project / ".ai" / "state.db")
    db.execute("DROP TRIGGER events_no_update")
    victim = db.execute("SELECT MIN(id) FROM events WHERE action = 'claim'").fetchone()[0]
    db.execute("UPDATE events SET actor = 'someone-else' WHERE id = ?", (victim,))
    db.commit()
    db.close()
    c = console(console_project)
    page = httpx.get(c.url + "/audit").text
    assert "Audit log tampered" in page and f"event {victim}" in page


def test_a_missing_task_is_404_and_the_stream_sends_the_page_at_once(console_project, console, proc_cli):
    tid = _run(proc_cli, console_project, "shown")
    c = console(console_project)
    assert httpx.get(c.url + "/tasks/999").status_code == 404
    assert httpx.get(c.url + "/nowhere").status_code == 404
    with httpx.Client() as client, client.stream("GET", c.url + "/events", params={"view": "task", "id": tid}) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        lines = s.iter_lines()
        assert next(lines) == "retry: 1000"
        event = next(line for line in lines if line.startswith("event: "))
        first = next(lines)
        assert event == "event: update" and first.startswith("data: ") and 'id="task-title"' in first


def test_usage_page_shows_an_unknown_cost_as_unknown(console_project, console):
    c = console(console_project)
    page = httpx.get(c.url + "/usage").text
    assert '<tr data-key="total">' in page
    total = page.split('<tr data-key="total">')[1].split("</tr>")[0]
    assert "<td>-</td>" in total  # no priced run: the cost is unknown, not $0
    assert httpx.get(c.url + "/usage", params={"metric": "tokens"}).text.count('aria-label="tokens per day"') == 1
