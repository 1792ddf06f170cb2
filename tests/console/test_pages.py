"""Pages read over HTTP from a real console: the audit page's filters and its verify result (a tampered log is
named), a missing task, the usage page's unknown cost, and the event stream of a page."""

from __future__ import annotations

import json
import sqlite3
import time

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


def _first_update(stream_lines, needle: str, within_s: float = 20) -> str:
    """The next update whose page contains `needle` (updates are `data:` lines ended by a blank line); the
    stream's keepalive every 15 s lets the deadline be checked even when no update comes."""
    data: list[str] = []
    deadline = time.monotonic() + within_s
    for line in stream_lines:
        assert time.monotonic() < deadline, f"no update with {needle!r} within {within_s} s"
        if line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            page, data = "\n".join(data), []
            if needle in page:
                return page
    raise AssertionError(f"the stream ended without {needle!r}")


def test_agents_page_health_pause_load_current_task_usage_and_live_activity(
    console_project, console, proc_cli, fake_provider, capsys, monkeypatch
):
    from aictl.config import load_settings
    from aictl.store import open_store
    from aictl.tasks.fence import write_activity
    from tests.agents.cli_fixtures import cli_json, execute
    from tests.agents.sdk_variants import KEYS
    from tests.fakeprovider import reply, tool

    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    for name, key_env in (("api-1", "ANTHROPIC_API_KEY"), ("api-2", "NO_SUCH_KEY_VARIABLE")):
        cli_json(capsys, "ai", "register", name, "--connector", "anthropic", "--model", "claude-haiku-4-5",
                 "--base-url", fake_provider.url, "--api-key-env", key_env)  # fmt: skip
    ran = cli_json(capsys, "task", "create", "write a", "--lock", "a.txt")["id"]
    fake_provider.script(reply("ok", [tool("write_file", {"path": "a.txt", "content": "a\n"})], usage=(900, 30)),
                         reply("done", usage=(100, 2)))  # fmt: skip
    assert execute(capsys, str(ran), "--ai", "api-1")[0] == 0
    cli_json(capsys, "ai", "pause", "api-2", "--for", "2h", "--reason", "provider rate limit")
    held = cli_json(capsys, "task", "create", "held by api-1", "--lock", "b.txt")["id"]
    claim = cli_json(capsys, "task", "claim", "--id", str(held), "--ai", "api-1", "--owner", "w9")
    c = console(console_project)
    with httpx.Client(timeout=30) as client, client.stream("GET", c.url + "/events", params={"view": "agents"}) as s:
        lines = s.iter_lines()
        page = _first_update(lines, 'data-ai="api-1"')
        one = page.split('data-ai="api-1"')[1].split("</tr>")[0]
        two = page.split('data-ai="api-2"')[1].split("</tr>")[0]
        assert f"#{held} held by api-1" in one and "1 / 1" in one and "1032 tokens" in one and "$" in one
        assert "paused" in two and "provider rate limit" in two and "NO_SUCH_KEY_VARIABLE" in two
        assert "problem" in two and "0 / 1" in two
        settings = load_settings(str(console_project))
        store = open_store(settings.resolved_database_url)
        try:
            with store.write() as tx:  # an activity line is no audit event: the feed polls it too
                assert write_activity(tx, held, "w9", claim["task"]["lease_epoch"], "editing b.txt")
        finally:
            store.close()
        assert "editing b.txt" in _first_update(lines, "editing b.txt")


def test_queue_page_shows_why_tasks_wait_and_the_locks_held(console_project, console, proc_cli):
    def create(*args: str) -> int:
        return json.loads(proc_cli("task", "create", *args, "-o", "json", cwd=console_project).stdout)["id"]

    a = create("schema", "--lock", "src/**")
    b = create("api", "--depends-on", str(a), "--lock", "docs/**")
    overlap = create("touches src", "--lock", "src/x/**")
    claimed = proc_cli("task", "claim", "--id", str(a), "--owner", "w1", cwd=console_project)
    assert claimed.returncode == 0, claimed.stderr
    c = console(console_project)
    page = httpx.get(c.url + "/").text
    ready = page.split('<table id="ready">')[1].split("</table>")[0]
    row_b = ready.split(f'data-task="{b}"')[1].split("</tr>")[0]
    row_c = ready.split(f'data-task="{overlap}"')[1].split("</tr>")[0]
    assert f"blocked by #{a} (claimed)" in row_b
    assert f"locked by #{a} (src/**, held by w1)" in row_c
    locks = page.split('<table id="locks">')[1].split("</table>")[0]
    assert f">#{a}</a>" in locks and "<code>src/**</code>" in locks and "w1" in locks
    dag = page.split('<div class="dagbox">')[1].split("</div>")[0]
    assert dag.count('<g class="node">') == 3 and 'class="edge"' in dag  # b depends on a: one arrow


def test_usage_page_shows_each_ais_cost_cap_from_the_policy(console_project, console, proc_cli):
    policy = console_project / ".ai" / "policy.yaml"
    policy.write_text(
        policy.read_text()
        + """
  - id: every-run-capped
    effect: allow
    match: {actions: [execute]}
    limits: {max_cost_usd: 5.0}
  - id: premium-capped-harder
    effect: allow
    match: {actions: [execute], ai_labels: [premium]}
    limits: {max_cost_usd: 1.25}
"""
    )
    for name, labels in (("plain-1", []), ("fancy-1", ["--label", "premium"])):
        done = proc_cli("ai", "register", name, "--connector", "command", *labels, cwd=console_project)
        assert done.returncode == 0, done.stderr
    c = console(console_project)
    budgets = httpx.get(c.url + "/usage").text.split('<table id="budgets">')[1].split("</table>")[0]
    assert "<td>plain-1</td><td>$5.00</td>" in budgets
    assert "<td>fancy-1</td><td>$1.25</td>" in budgets  # the strictest matching rule, as the execute decision


def test_a_carriage_return_in_a_tasks_text_does_not_cut_the_stream(console_project, console, proc_cli):
    made = proc_cli("task", "create", "cr", "--description", "one\r\rdata: <b>injected</b>\rtwo", "-o", "json",
                    cwd=console_project)  # fmt: skip
    assert made.returncode == 0, made.stderr
    tid = json.loads(made.stdout)["id"]
    c = console(console_project)
    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", c.url + "/events", params={"view": "task", "id": tid}) as s,
    ):
        page = _first_update(s.iter_lines(), 'id="task-title"')
    assert "<h2>Evidence</h2>" in page  # the whole page arrived as one update
    assert "<b>injected</b>" not in page and "&lt;b&gt;injected&lt;/b&gt;" in page


def test_workflows_page_shows_each_runs_steps_and_why_one_was_skipped(console_project, console, proc_cli):
    flows = console_project / ".ai" / "workflows"
    flows.mkdir(parents=True, exist_ok=True)
    (flows / "hello.yaml").write_text(
        "version: 1\nname: hello\nsteps:\n"
        "  - id: greet\n    command: echo hi > src/hi.txt\n    locks: [src/hi.txt]\n"
        "  - id: never\n    needs: [greet]\n    when: 'false'\n    command: 'false'\n"
    )
    ran = proc_cli("workflow", "run", "hello", "--foreground", "-o", "json", cwd=console_project)
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    c = console(console_project)
    page = httpx.get(c.url + "/workflows").text
    article = page.split(f'id="run-{run["id"]}"')[1].split("</article>")[0]
    assert 'data-status="succeeded"' in page and "of hello" in article
    assert f'id="run-{run["id"]}-greet" data-status="succeeded"' in article
    never = article.split(f'id="run-{run["id"]}-never"')[1].split("</tr>")[0]
    assert 'data-status="skipped"' in never and "when" in never
    task = run["steps"][0]["task_id"]
    assert f'href="/tasks/{task}"' in article
