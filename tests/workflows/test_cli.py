"""`aictl workflow …` as a user runs it (whole processes): exit codes and JSON, not table text."""

from __future__ import annotations

import json

from tests.conftest import run_cli
from tests.daemon.conftest import make_project

HELLO = """version: 1
name: hello
inputs:
  who: {type: string, required: true}
steps:
  - id: greet
    command: echo hello ${{ inputs.who }} > hello.txt
    locks: [hello.txt]
  - id: check
    needs: [greet]
    command: cat hello.txt
    outputs: {text: stdout}
  - id: never
    needs: [greet]
    when: inputs.who == "nobody"
    command: "false"
"""


def test_workflow_commands_end_to_end(tmp_path):
    root = make_project(tmp_path / "repo")
    (root / ".ai" / "workflows" / "hello.yaml").write_text(HELLO)

    def cli(*args: str) -> tuple[int, object]:
        r = run_cli(*args, "-o", "json", cwd=root)
        return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else r.stderr)

    code, listed = cli("workflow", "list")
    assert code == 0 and [w["name"] for w in listed] == ["hello"]
    code, shown = cli("workflow", "show", "hello")
    assert code == 0 and [s["id"] for s in shown["steps"]] == ["greet", "check", "never"]
    code, err = cli("workflow", "run", "hello")
    assert code == 2 and "needs input 'who'" in err
    code, run = cli("workflow", "run", "hello", "--input", "who=a b")
    assert code == 0 and run["status"] == "succeeded"
    steps = {s["step_id"]: s for s in run["steps"]}
    assert steps["check"]["outputs"]["text"] == "hello a b\n"
    assert steps["never"]["status"] == "skipped" and steps["never"]["reason"].startswith("when `")
    code, status = cli("workflow", "status", str(run["id"]))
    assert code == 0 and status["status"] == "succeeded"
    code, runs = cli("workflow", "runs", "--status", "succeeded")
    assert code == 0 and [r["id"] for r in runs] == [run["id"]]
    code, err = cli("workflow", "cancel", str(run["id"]))
    assert code == 4  # a finished run does not stop again
    code, made = cli("workflow", "create", "mine", "--from", "hello")
    assert code == 0 and made["name"] == "mine" and (root / ".ai" / "workflows" / "mine.yaml").exists()
    code, made = cli("workflow", "create", "my-feature", "--from", "feature")  # one of aictl's shipped examples
    assert code == 0 and made["name"] == "my-feature", made
    assert "name: my-feature" in (root / ".ai" / "workflows" / "my-feature.yaml").read_text()
    code, checked = cli("workflow", "validate")
    assert code == 0 and all(c["valid"] for c in checked)
    (root / ".ai" / "workflows" / "bad.yaml").write_text("version: 1\nname: bad\nsteps:\n  - id: a\n    cmd: x\n")
    code, checked = cli("workflow", "validate")
    bad = next(c for c in checked if not c["valid"])
    assert code == 2 and any(i["line"] == 5 and "unknown key 'cmd'" in i["message"] for i in bad["issues"])


def test_a_failed_run_exits_1_and_cancel_stops_a_running_one(tmp_path):
    root = make_project(tmp_path / "repo")
    (root / ".ai" / "workflows" / "f.yaml").write_text("version: 1\nname: f\nsteps:\n  - id: a\n    command: exit 3\n")
    (root / ".ai" / "workflows" / "g.yaml").write_text(
        "version: 1\nname: g\nsteps:\n  - id: a\n    approval: {reason: wait}\n"
        "  - id: b\n    needs: [a]\n    command: 'true'\n"
    )
    r = run_cli("workflow", "run", "f", "-o", "json", cwd=root)
    assert r.returncode == 1 and json.loads(r.stdout)["reason"].startswith("step a failed: task 1 failed")
    r = run_cli("workflow", "run", "g", "-o", "json", cwd=root)
    parked = json.loads(r.stdout)
    assert r.returncode == 0 and parked["steps"][0]["status"] == "waiting_approval"
    r = run_cli("workflow", "cancel", str(parked["id"]), "--dry-run", "-o", "json", cwd=root)
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "cancelled"  # what would happen...
    r = run_cli("workflow", "status", str(parked["id"]), "-o", "json", cwd=root)
    assert json.loads(r.stdout)["status"] == "running"  # ...and nothing did
    r = run_cli("workflow", "cancel", str(parked["id"]), "-o", "json", cwd=root)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["status"] == "cancelled" and out["steps"][1]["status"] == "cancelled"
    gate = parked["steps"][0]["task_id"]
    r = run_cli("task", "get", str(gate), "-o", "json", cwd=root)
    assert json.loads(r.stdout)["status"] == "cancelled"  # its parked task went with it


def test_a_workflow_policy_overlay_from_the_cli(tmp_path):
    """create --from copies the overlay the example names; validate, run and policy validate refuse a bad one."""
    root = make_project(tmp_path / "repo")

    def cli(*args: str) -> tuple[int, object]:
        r = run_cli(*args, "-o", "json", cwd=root)
        assert "Traceback" not in r.stderr, r.stderr
        return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else r.stderr)

    overlay = root / ".ai" / "policies" / "workflows" / "dependency-bump.yaml"
    code, made = cli("workflow", "create", "bump", "--from", "dependency-bump")
    assert code == 0 and made["policy"] == "dependency-bump" and made["overlay"] == str(overlay), made
    assert "no-installs" in overlay.read_text()
    code, shown = cli("workflow", "show", "bump")
    assert code == 0 and shown["policy"] == "dependency-bump"
    code, checked = cli("workflow", "validate")
    assert code == 0 and all(c["valid"] for c in checked), checked
    code, task = cli("task", "create", "adapt", "--label", "policy-overlay:dependency-bump")
    assert code == 0, task
    code, explained = cli("policy", "explain", "--ai", "codex", "--action", "run_command", "--command", "pip install x",
                          "--task", str(task["id"]))  # fmt: skip
    assert code == 0 and explained["decision"]["effect"] == "deny", explained
    assert "dependency-bump/no-installs" in explained["decision"]["matched_rules"]

    overlay.write_text("version: 1\nrules:\n  - id: grant\n    effect: allow\n")
    code, err = cli("policy", "validate")
    assert code != 0 and [(i["file"], i["line"]) for i in err] == [(str(overlay), 3)], err  # type: ignore[union-attr]
    code, err = cli("workflow", "run", "bump", "--input", "package=x", "--input", "version=1")
    assert code != 0 and "grants nothing" in str(err), err

    overlay.unlink()
    code, checked = cli("workflow", "validate", str(root / ".ai" / "workflows" / "bump.yaml"))
    assert code == 2 and checked[0]["issues"][0]["line"] == 4, checked
    code, err = cli("workflow", "run", "bump", "--input", "package=x", "--input", "version=1")
    assert code != 0 and "dependency-bump.yaml does not exist" in str(err), err
    code, runs = cli("workflow", "runs")
    assert code == 0 and runs == []
