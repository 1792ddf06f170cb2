"""The CLI as users and CI drive it: exit codes, JSON on stdout, JSON errors on stderr."""

from __future__ import annotations

import json

import pytest

from aictl.cli.main import main


def test_create_claim_complete_round_trip(project, j):
    t = j("task", "create", "Fix login", "-p", "3", "--label", "auth,backend", "--lock", "src/auth/**")
    assert t["status"] == "queued" and t["labels"] == ["auth", "backend"] and t["lock_paths"] == ["src/auth/**"]
    r = j("task", "claim", "--owner", "w1")
    assert r["task"]["id"] == t["id"] and r["lease"]["lease_epoch"] == 1 and r["lease"]["owner"] == "w1"
    assert j("task", "start", str(t["id"]), "--owner", "w1", "--epoch", "1")["status"] == "running"
    hb = j("task", "heartbeat", str(t["id"]), "--owner", "w1", "--epoch", "1")
    assert hb["lease_epoch"] == 1
    done = j("task", "complete", str(t["id"]), "--owner", "w1", "--epoch", "1", "--result", '{"pr": 7}')
    assert done["status"] == "done" and done["result"] == {"pr": 7}
    events = j("audit", "log", "--task", str(t["id"]))
    assert [e["action"] for e in events if e["action"] != "decision"] == ["create", "claim", "start", "complete"]
    # the project's policy (aictl init's default) judged each lease action, and each judgment is on record
    decisions = [e["data"] for e in events if e["action"] == "decision"]
    assert [(d["policy_action"], d["effect"]) for d in decisions] == [
        ("claim", "allow"),
        ("start", "allow"),
        ("complete", "allow"),
    ]


def test_list_filters_and_empty_list_is_not_an_error(project, cli, j):
    assert j("task", "list") == []
    j("task", "create", "a", "-l", "fe")
    j("task", "create", "b", "-l", "be", "-c", "gpu")
    assert [t["title"] for t in j("task", "list", "--label", "fe")] == ["a"]
    assert [t["title"] for t in j("task", "list", "--capability", "gpu")] == ["b"]
    assert [t["title"] for t in j("task", "list", "--status", "queued,done")] == ["a", "b"]
    j("task", "claim", "--owner", "zed")
    assert [t["title"] for t in j("task", "list", "--owner", "zed")] == ["a"]
    code, _out, err = cli("task", "list", "--status", "bogus")
    assert code == 2 and "unknown status" in err


def _expire_leases(project) -> None:
    """An hour passes for every lease (TTLs under 1 s are refused, and tests do not sleep that long)."""
    import sqlite3

    with sqlite3.connect(project / ".ai" / "state.db") as db:
        db.execute("UPDATE tasks SET lease_expires_at = lease_expires_at - 3600 WHERE lease_expires_at IS NOT NULL")


def test_stale_epoch_exit_4_with_json_error(project, cli, j):
    j("task", "create", "x")
    j("task", "claim", "--owner", "a", "--ttl", "1")
    _expire_leases(project)
    j("task", "claim", "--owner", "b")
    code, out, err = cli("task", "complete", "1", "--owner", "a", "--epoch", "1", "-o", "json")
    assert code == 4 and out == ""
    e = json.loads(err)["error"]
    assert e["code"] == "lease_lost" and e["details"]["current_epoch"] == 2 and "epoch 2" in e["message"]


def test_error_codes(project, cli, j):
    assert cli("task", "get", "42")[0] == 3
    code, _out, err = cli("task", "claim")
    assert code == 3 and "nothing to claim" in err and "aictl task ready" in err
    j("task", "create", "a")
    j("task", "create", "b", "--dep", "1")
    code, _, err = cli("task", "deps", "1", "--add", "2")
    assert code == 4 and "#1 → #2 → #1" in err
    assert cli("task", "create", "bad", "--lock", "!x")[0] == 2
    assert cli("task", "frobnicate")[0] == 2
    assert cli("task", "create", "x", "-o", "xml")[0] == 2


def test_name_and_yaml_outputs(project, cli):
    code, out, _ = cli("task", "create", "a", "-o", "name")
    assert code == 0 and out.strip() == "1"
    code, out, _ = cli("task", "get", "1", "-o", "yaml")
    import yaml

    assert yaml.safe_load(out)["title"] == "a"
    code, out, _ = cli("task", "list")  # piped: tab-separated, no header
    assert out.split("\t")[:2] == ["1", "queued"]


def test_dry_run_writes_nothing(project, j):
    t = j("task", "create", "a", "--dry-run")
    assert t["title"] == "a"
    assert j("task", "list") == [] and j("audit", "log") == []


def test_batch_file_and_ready(project, tmp_path, cli, j):
    f = tmp_path / "tasks.yaml"
    f.write_text(
        "tasks:\n  - {key: a, title: A, priority: 2, locks: ['src/**']}\n"
        "  - {key: b, title: B, depends_on: [a]}\n  - {title: C, locks: ['src/x.py']}\n"
    )
    tasks = j("task", "create", "-f", str(f))
    assert [t["status"] for t in tasks] == ["queued", "blocked", "queued"]
    j("task", "claim", "--owner", "w")
    ready = {e["id"]: e for e in j("task", "ready")}
    assert ready[2]["reasons"] == ["blocked by #1 (claimed)"]
    assert ready[3]["reasons"][0].startswith("locked by #1 (src/**")
    f.write_text("tasks:\n  - {title: A, bogus: 1}\n")
    code, _, err = cli("task", "create", "-f", str(f))
    assert code == 2 and "bogus" in err and str(f) in err
    f.write_text("tasks:\n  - {title: A\n")
    code, _, err = cli("task", "create", "-f", str(f))
    assert code == 2 and f"{f}:" in err


def test_reap_cancel_retry(project, j):
    j("task", "create", "a", "--max-attempts", "1")
    j("task", "claim", "--owner", "w", "--ttl", "1")
    _expire_leases(project)
    reaped = j("task", "reap")
    assert reaped[0]["status"] == "failed"
    assert j("task", "retry", "1")["status"] == "queued"
    assert j("task", "cancel", "1", "--reason", "dup")["status"] == "cancelled"


def test_claim_wait_times_out(project, cli):
    code, _, err = cli("task", "claim", "--wait", "--timeout", "0.3")
    assert code == 3 and "within 0.3s" in err


def test_not_initialized_has_a_hint(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("task", "list")
    assert code == 1 and "aictl init" in err


def test_config_show_names_sources(project, monkeypatch, cli, j):
    (project / ".ai" / "config.yaml").write_text("lease_ttl: 15\nmax_attempts: 7\n")
    monkeypatch.setenv("AICTL_MAX_ATTEMPTS", "9")
    cfg = j("config", "show")
    assert cfg["lease_ttl"] == {"value": 15.0, "source": str(project / ".ai" / "config.yaml")}
    assert cfg["max_attempts"] == {"value": 9, "source": "env AICTL_MAX_ATTEMPTS"}
    assert cfg["backoff_max"]["source"] == "default"
    (project / ".ai" / "config.yaml").write_text("lease_ttl: [oops\n")
    code, _, err = cli("config", "show")
    assert code == 2 and "config.yaml:2:1" in err and "line 1, column 12" in err


def test_whole_process_no_traceback_and_stdin_closed(project, proc_cli):
    r = proc_cli("task", "get", "7", cwd=project, input="")
    assert r.returncode == 3 and "Traceback" not in r.stderr and r.stdout == ""
    r = proc_cli("task", "create", "hello", "-o", "json", cwd=project, input="")
    assert r.returncode == 0 and json.loads(r.stdout)["title"] == "hello"
    r = proc_cli("task", "get", "7", "-o", "json", cwd=project, env={"AICTL_DEBUG": "1"})
    assert r.returncode == 3 and "Traceback" in r.stderr


def test_project_and_home_relocate_state(tmp_path, capsys, monkeypatch, j):
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "elsewhere"
    monkeypatch.setenv("AICTL_HOME", str(home))
    assert main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    j("task", "create", "a")
    assert (home / "state.db").exists() and not (tmp_path / ".ai" / "state.db").exists()


@pytest.mark.parametrize("path", [["task"], ["audit"], ["config"]])
def test_every_command_has_help(path, capsys):
    import typer

    from aictl.cli.main import app

    group = typer.main.get_command(app)
    for name in path:
        group = group.commands[name]
    for name, cmd in group.commands.items():
        assert cmd.help and cmd.help.strip(), f"{' '.join(path)} {name} has no help text"
        code = main([*path, name, "--help"])
        assert code == 0
    capsys.readouterr()


def test_cli_reference_is_current():
    from pathlib import Path

    from aictl.cli.docgen import render

    doc = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    assert doc.read_text() == render(), "regenerate: python -m aictl.cli.docgen > docs/cli.md"


def test_list_limit_says_when_it_cuts(project, capsys, cli):
    for t in "abc":
        main(["task", "create", t, "-o", "name"])
    capsys.readouterr()
    code, out, err = cli("task", "list", "--limit", "2", "-o", "json")
    assert code == 0 and [t["title"] for t in json.loads(out)] == ["a", "b"] and "--limit 0" in err
    code, out, err = cli("task", "list", "--limit", "0", "-o", "json")
    assert len(json.loads(out)) == 3 and err == ""


def test_get_shows_the_last_holder_of_a_task_nobody_holds(project, cli, j):
    t = j("task", "create", "x")
    j("task", "claim", "--owner", "w1")
    held = j("task", "get", str(t["id"]))
    assert (held["owner"], held["last_owner"], held["last_epoch"]) == ("w1", "w1", 1)
    j("task", "release", str(t["id"]), "--owner", "w1", "--epoch", "1")
    got = j("task", "get", str(t["id"]))
    assert got["status"] == "queued" and got["owner"] is None
    assert (got["last_owner"], got["last_epoch"], got["last_ai"]) == ("w1", 1, None)
    code, out, _ = cli("task", "get", str(t["id"]), "-o", "table")
    assert code == 0 and "last owner:   w1" in out and "last epoch:   1" in out
    assert not any(line.strip().startswith(("owner:", "lease epoch:")) for line in out.splitlines())
    assert [row["owner"] for row in j("task", "list")] == [None]


def test_heartbeat_dry_run_checks_the_lease_and_extends_nothing(project, cli, j):
    t = j("task", "create", "x")
    lease = j("task", "claim", "--owner", "w1", "--ttl", "60")["lease"]
    before = j("task", "get", str(t["id"]))["lease_expires_at"]
    dry = j("task", "heartbeat", str(t["id"]), "--owner", "w1", "--epoch", "1", "--ttl", "3600", "--dry-run")
    assert dry["lease_expires_at"] > lease["lease_expires_at"]
    assert j("task", "get", str(t["id"]))["lease_expires_at"] == before
    code, _, err = cli("task", "heartbeat", str(t["id"]), "--owner", "w1", "--epoch", "9", "--dry-run", "-o", "json")
    assert code == 4 and json.loads(err)["error"]["code"] == "lease_lost"


def test_reap_dry_run_reaps_nothing(project, j):
    t = j("task", "create", "x")
    j("task", "claim", "--owner", "w1")
    from aictl.config import load_settings
    from aictl.store import open_store

    store = open_store(load_settings(project).resolved_database_url)
    with store.write() as tx:  # the lease ran out (no sleep: its end is moved into the past)
        tx.run("UPDATE tasks SET lease_expires_at = 1 WHERE id = :id", {"id": t["id"]})
    store.close()
    assert [x["id"] for x in j("task", "reap", "--dry-run")] == [t["id"]]
    assert j("task", "get", str(t["id"]))["status"] == "claimed"
    assert [x["status"] for x in j("task", "reap")] == ["queued"]


def test_attach_dry_run_checks_the_lease_and_attaches_nothing(project, tmp_path, cli, j):
    t = j("task", "create", "x")
    j("task", "claim", "--owner", "w1")
    f = tmp_path / "log.txt"
    f.write_text("hello\n")
    ref = j("task", "attach", str(t["id"]), str(f), "--owner", "w1", "--epoch", "1", "--dry-run")
    assert ref["size"] == 6
    assert j("task", "evidence", str(t["id"])) == []
    code, _, _ = cli("task", "attach", str(t["id"]), str(f), "--owner", "w1", "--epoch", "2", "--dry-run")
    assert code == 4


def test_audit_export_json_is_the_same_events_as_the_jsonl(project, cli, j):
    j("task", "create", "x")
    code, out, _ = cli("audit", "export")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and lines and j("audit", "export") == lines
    assert cli("audit", "export", "-o", "name")[1].split() == [str(e["id"]) for e in lines]
