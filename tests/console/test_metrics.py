"""`/metrics` of the console and of a daemon (`--metrics-port`), scraped and parsed with prometheus_client's parser:
each figure equals what the record says (task list, audit log, decisions, run and usage evidence)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.agents.sdk_variants import KEYS
from tests.fakeprovider import reply, tool


def scrape(url: str, **kw) -> dict[str, dict[tuple, float]]:
    """name -> {sorted label items: value}, samples as the parser gives them."""
    from prometheus_client.parser import text_string_to_metric_families

    body = httpx.get(url, timeout=30, **kw)
    assert body.status_code == 200 and body.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body.text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _json(proc_cli, cwd, *args):
    done = proc_cli(*args, "-o", "json", cwd=cwd)
    assert done.returncode in (0, 5), done.stderr
    return json.loads(done.stdout)


def _reap_one(project, proc_cli) -> int:
    """A claim whose lease runs out, reaped: time moves through the services' clock, not by sleeping."""
    from aictl.config import load_settings
    from aictl.store import open_store
    from aictl.tasks.service import TaskService

    tid = _json(proc_cli, project, "task", "create", "abandoned", "--command", "true")["id"]
    settings = load_settings(str(project))
    store = open_store(settings.resolved_database_url)
    try:
        now = [time.time()]
        svc = TaskService(store, settings, clock=lambda: now[0])
        assert svc.claim("gone-worker", task_id=tid, ttl=5).task.id == tid
        now[0] += 60
        assert [t.id for t in svc.reap()] == [tid]
    finally:
        store.close()
    return tid


def test_console_metrics_equal_the_record(console_project, console, proc_cli, fake_provider, capsys, monkeypatch):
    from tests.agents.cli_fixtures import cli_json, execute

    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    cli_json(capsys, "ai", "register", "api-1", "--connector", "anthropic", "--model", "claude-haiku-4-5",
             "--base-url", fake_provider.url, "--api-key-env", "ANTHROPIC_API_KEY")  # fmt: skip
    tid = cli_json(capsys, "task", "create", "write a", "--lock", "a.txt")["id"]
    fake_provider.script(reply("ok", [tool("write_file", {"path": "a.txt", "content": "a\n"})], usage=(900, 30)),
                         reply("done", usage=(100, 2)))  # fmt: skip
    assert execute(capsys, str(tid), "--ai", "api-1")[0] == 0
    for i in range(2):
        t = _json(proc_cli, console_project, "task", "create", f"cmd {i}", "--lock", "src/**", "--command", "true")
        assert proc_cli("task", "execute", str(t["id"]), "--owner", "w1", cwd=console_project).returncode == 0
    parked = _json(proc_cli, console_project, "task", "create", "m", "-l", "migration", "--lock", "src/**",
                   "--command", "true")["id"]  # fmt: skip
    assert proc_cli("task", "execute", str(parked), "--owner", "w1", cwd=console_project).returncode == 5
    _reap_one(console_project, proc_cli)

    c = console(console_project)
    m = scrape(c.url + "/metrics")

    tasks = _json(proc_cli, console_project, "task", "list")
    for status in ("queued", "done", "awaiting_approval", "failed"):
        assert m["aictl_tasks"][(("status", status),)] == sum(t["status"] == status for t in tasks)
    assert m["aictl_merge_queue_depth"][()] == sum(t["status"] == "done" for t in tasks)
    events = _json(proc_cli, console_project, "audit", "log")
    assert m["aictl_claims_total"][()] == sum(e["action"] == "claim" for e in events) == 5
    assert m["aictl_lease_expiries_total"][(("outcome", "queued"),)] == 1 and m["aictl_reaps_total"][()] == 1
    decisions = _json(proc_cli, console_project, "audit", "decisions")
    by = {}
    for d in decisions:
        by[(d["effect"], d["action"])] = by.get((d["effect"], d["action"]), 0) + 1
    assert by[("require_approval", "execute")] == 1
    for (effect, action), n in by.items():
        assert m["aictl_policy_decisions_total"][(("action", action), ("effect", effect))] == n
    assert m["aictl_run_duration_seconds_count"][(("connector", "command"),)] == 2
    assert m["aictl_run_duration_seconds_count"][(("connector", "anthropic"),)] == 1
    assert m["aictl_run_duration_seconds_bucket"][(("connector", "command"), ("le", "+Inf"))] == 2
    usage = _json(proc_cli, console_project, "usage")
    row = next(r for r in usage["rows"] if r["key"] == "api-1")
    assert m["aictl_tokens_total"][(("ai", "api-1"), ("kind", "input"))] == row["input_tokens"] == 1000
    assert m["aictl_tokens_total"][(("ai", "api-1"), ("kind", "output"))] == row["output_tokens"] == 32
    assert m["aictl_cost_usd_total"][(("ai", "api-1"),)] == pytest.approx(row["cost_usd"])

    # incremental: a second scrape sees only what happened since, added once
    t = _json(proc_cli, console_project, "task", "create", "one more", "--lock", "src/**", "--command", "true")
    assert proc_cli("task", "execute", str(t["id"]), "--owner", "w1", cwd=console_project).returncode == 0
    again = scrape(c.url + "/metrics")
    assert again["aictl_claims_total"][()] == 6
    assert again["aictl_run_duration_seconds_count"][(("connector", "command"),)] == 3


def test_a_daemon_serves_metrics_on_its_port_and_the_console_with_console(console_project, proc_cli):
    started = _json(proc_cli, console_project, "daemon", "start", "--workers", "1", "--metrics-port", "0",
                    "--console", "--console-port", "0")  # fmt: skip
    try:
        url = started["metrics"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        t = _json(proc_cli, console_project, "task", "create", "by the daemon", "--lock", "src/**",
                  "--command", "true")  # fmt: skip
        deadline = time.monotonic() + 60
        while _json(proc_cli, console_project, "task", "get", str(t["id"]))["status"] != "done":
            assert time.monotonic() < deadline, "the daemon did not run the task"
            time.sleep(0.2)
        m = scrape(url)
        assert m["aictl_tasks"][(("status", "done"),)] == 1
        assert m["aictl_claims_total"][()] == 1
        assert m["aictl_run_duration_seconds_count"][(("connector", "command"),)] == 1
        page = httpx.get(started["console"] + f"tasks/{t['id']}", timeout=30)
        assert page.status_code == 200 and "by the daemon" in page.text and 'data-status="done"' in page.text
    finally:
        assert proc_cli("daemon", "stop", "--now", cwd=console_project, timeout=60).returncode == 0
    with pytest.raises(httpx.ConnectError):  # the console stopped with its daemon
        httpx.get(started["console"], timeout=5)


def test_daemon_console_on_a_public_address_without_a_token_refuses_to_start(console_project, proc_cli):
    done = proc_cli("daemon", "start", "--console", "--console-host", "0.0.0.0", cwd=console_project)
    assert done.returncode == 2 and "AICTL_CONSOLE_TOKEN" in done.stderr
    status = proc_cli("daemon", "status", "-o", "json", cwd=console_project)
    assert status.returncode == 3 and json.loads(status.stdout)["running"] is False  # 3: no daemon
