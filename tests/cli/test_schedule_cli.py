"""`aictl task create --every` and `aictl schedule …`: exit codes and JSON."""

from __future__ import annotations

import json

from aictl.cli.main import main


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def j(capsys, *args):
    code, out, err = cli(capsys, *args, "-o", "json")
    assert code == 0, err
    return json.loads(out)


def make_due(project, schedule_id):
    """Move a schedule's next run into the past, as if its time had come."""
    from aictl.config import load_settings
    from aictl.store import open_store

    store = open_store(load_settings(project).resolved_database_url)
    with store.write() as tx:
        tx.run("UPDATE schedules SET next_at = 0 WHERE id = :id", {"id": schedule_id})
    store.close()


def test_task_create_every_makes_a_schedule_and_reap_fires_it(project, capsys):
    s = j(capsys, "task", "create", "Nightly deps bump", "--every", "0 3 * * *", "--tz", "UTC", "-p", "2",
          "--lock", "requirements.txt")
    assert s["cron"] == "CRON_TZ=UTC 0 3 * * *" and s["enabled"] and s["title"] == "Nightly deps bump"
    assert s["next_at"].endswith("T03:00:00+00:00") and s["spec"]["priority"] == 2
    assert j(capsys, "task", "list") == []  # a schedule, not a task
    assert [x["id"] for x in j(capsys, "schedule", "list")] == [s["id"]]
    assert j(capsys, "schedule", "get", str(s["id"]))["cron"] == s["cron"]

    make_due(project, s["id"])
    code, out, err = cli(capsys, "task", "reap")
    assert code == 0 and "fired 1 due schedule(s): created task(s) 1" in err
    [t] = j(capsys, "task", "list")
    assert t["title"] == "Nightly deps bump" and t["priority"] == 2 and t["lock_paths"] == ["requirements.txt"]
    assert j(capsys, "schedule", "get", str(s["id"]))["last_task_id"] == t["id"]


def test_schedule_fire_pause_resume_remove(project, capsys):
    s = j(capsys, "task", "create", "Every minute", "--every", "* * * * *")
    make_due(project, s["id"])
    [t] = j(capsys, "schedule", "fire")
    assert t["title"] == "Every minute" and t["status"] == "queued"
    assert j(capsys, "schedule", "fire") == []  # not due again yet
    assert j(capsys, "schedule", "pause", str(s["id"]))["enabled"] is False
    assert cli(capsys, "schedule", "pause", str(s["id"]))[0] == 4
    assert [x["id"] for x in j(capsys, "schedule", "list", "--paused")] == [s["id"]]
    assert j(capsys, "schedule", "list", "--active") == []
    assert j(capsys, "schedule", "resume", str(s["id"]))["enabled"] is True
    code, out, err = cli(capsys, "schedule", "remove", str(s["id"]))  # stdin is not a terminal: no prompt
    assert code == 2 and "--yes" in err
    assert j(capsys, "schedule", "remove", str(s["id"]), "--dry-run")["id"] == s["id"]
    assert j(capsys, "schedule", "remove", str(s["id"]), "--yes")["id"] == s["id"]
    code, out, err = cli(capsys, "schedule", "get", str(s["id"]))
    assert code == 3 and "aictl schedule list" in err
    events = [e["action"] for e in j(capsys, "audit", "log") if e["action"].startswith("schedule_")]
    assert events == ["schedule_create", "schedule_fire", "schedule_pause", "schedule_resume", "schedule_remove"]


def test_bad_input_is_a_usage_error(project, capsys):
    code, out, err = cli(capsys, "task", "create", "x", "--every", "0 24 * * *", "-o", "json")
    assert code == 2 and json.loads(err)["error"]["code"] == "cron_invalid"
    assert "hour field '24'" in json.loads(err)["error"]["message"]
    code, _, err = cli(capsys, "task", "create", "x", "--every", "@daily", "--tz", "Nowhere/Land")
    assert code == 2 and "unknown time zone" in err
    assert cli(capsys, "task", "create", "x", "--tz", "UTC")[0] == 2
    assert cli(capsys, "task", "create", "--every", "@daily")[0] == 2
    assert j(capsys, "schedule", "list") == []


def test_human_output_names_the_next_run(project, capsys):
    code, out, err = cli(capsys, "task", "create", "Hourly", "--every", "@hourly")
    assert code == 0 and "schedule 1: Hourly" in out and "next run:" in out and "aictl schedule pause 1" in err
