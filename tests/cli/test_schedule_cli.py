"""`aictl task create --every` and `aictl schedule …`: exit codes and JSON."""

from __future__ import annotations

import json


def make_due(project, schedule_id):
    """Move a schedule's next run into the past, as if its time had come."""
    from aictl.config import load_settings
    from aictl.store import open_store

    store = open_store(load_settings(project).resolved_database_url)
    with store.write() as tx:
        tx.run("UPDATE schedules SET next_at = 0 WHERE id = :id", {"id": schedule_id})
    store.close()


def test_task_create_every_makes_a_schedule_and_reap_fires_it(project, cli, j):
    s = j(
        "task",
        "create",
        "Nightly deps bump",
        "--every",
        "0 3 * * *",
        "--tz",
        "UTC",
        "-p",
        "2",
        "--lock",
        "requirements.txt",
    )
    assert s["cron"] == "CRON_TZ=UTC 0 3 * * *" and s["enabled"] and s["title"] == "Nightly deps bump"
    assert s["next_at"].endswith("T03:00:00+00:00") and s["spec"]["priority"] == 2
    assert j("task", "list") == []  # a schedule, not a task
    assert [x["id"] for x in j("schedule", "list")] == [s["id"]]
    assert j("schedule", "get", str(s["id"]))["cron"] == s["cron"]

    make_due(project, s["id"])
    code, _out, err = cli("task", "reap")
    assert code == 0 and "fired 1 due schedule(s): created task(s) 1" in err
    [t] = j("task", "list")
    assert t["title"] == "Nightly deps bump" and t["priority"] == 2 and t["lock_paths"] == ["requirements.txt"]
    assert j("schedule", "get", str(s["id"]))["last_task_id"] == t["id"]


def test_schedule_fire_pause_resume_remove(project, cli, j):
    s = j("task", "create", "Every minute", "--every", "* * * * *")
    make_due(project, s["id"])
    [t] = j("schedule", "fire")
    assert t["title"] == "Every minute" and t["status"] == "queued"
    assert j("schedule", "fire") == []  # not due again yet
    assert j("schedule", "pause", str(s["id"]))["enabled"] is False
    assert cli("schedule", "pause", str(s["id"]))[0] == 4
    assert [x["id"] for x in j("schedule", "list", "--paused")] == [s["id"]]
    assert j("schedule", "list", "--active") == []
    assert j("schedule", "resume", str(s["id"]))["enabled"] is True
    code, _, err = cli("schedule", "remove", str(s["id"]))  # stdin is not a terminal: no prompt
    assert code == 2 and "--yes" in err
    assert j("schedule", "remove", str(s["id"]), "--dry-run")["id"] == s["id"]
    assert j("schedule", "remove", str(s["id"]), "--yes")["id"] == s["id"]
    code, _out, err = cli("schedule", "get", str(s["id"]))
    assert code == 3 and "aictl schedule list" in err
    events = [e["action"] for e in j("audit", "log") if e["action"].startswith("schedule_")]
    assert events == ["schedule_create", "schedule_fire", "schedule_pause", "schedule_resume", "schedule_remove"]


def test_bad_input_is_a_usage_error(project, cli, j):
    code, _out, err = cli("task", "create", "x", "--every", "0 24 * * *", "-o", "json")
    assert code == 2 and json.loads(err)["error"]["code"] == "cron_invalid"
    assert "hour field '24'" in json.loads(err)["error"]["message"]
    code, _, err = cli("task", "create", "x", "--every", "@daily", "--tz", "Nowhere/Land")
    assert code == 2 and "unknown time zone" in err
    assert cli("task", "create", "x", "--tz", "UTC")[0] == 2
    assert cli("task", "create", "--every", "@daily")[0] == 2
    assert j("schedule", "list") == []


def test_human_output_names_the_next_run(project, cli):
    code, out, err = cli("task", "create", "Hourly", "--every", "@hourly")
    assert code == 0 and "schedule 1: Hourly" in out and "next run:" in out and "aictl schedule pause 1" in err
