"""Workflows under real `aictl daemon` processes: an approval gate parks the run until `aictl task approve`, and a
daemon SIGKILLed mid-run is replaced by another that finishes the run, with no step attempt given a second task."""

from __future__ import annotations

import os
import signal

import pytest

from tests.daemon.conftest import wait_for

GATED = """
version: 1
name: gated
steps:
  - id: build
    command: echo built > built.txt
    locks: [built.txt]
  - id: gate
    needs: [build]
    approval: {reason: "ship it"}
  - id: after
    needs: [gate]
    command: cat built.txt
    outputs: {text: stdout}
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_env(request) -> dict:
    if request.param == "sqlite":
        return {}
    return {"AICTL_DATABASE_URL": request.getfixturevalue("pg_url")}


def _status(p, run_id: int) -> dict:
    return p.jcli("workflow", "status", str(run_id))


def _step(run: dict, step_id: str) -> dict:
    return next(s for s in run["steps"] if s["step_id"] == step_id)


@pytest.mark.slow
def test_an_approval_gate_parks_the_run_under_the_daemon_until_approved(make_daemon_project, backend_env):
    p = make_daemon_project(env=backend_env)
    (p.root / ".ai" / "workflows" / "gated.yaml").write_text(GATED)
    p.start("--workers", "2")
    run = p.jcli("workflow", "run", "gated")  # a daemon is up: it runs the steps, the command returns
    rid = run["id"]
    parked = wait_for(
        lambda: (r := _status(p, rid)) and _step(r, "gate")["status"] == "waiting_approval" and r, 60, "the gate"
    )
    gate_task = _step(parked, "gate")["task_id"]
    wait_for(lambda: p.task(gate_task).status == "awaiting_approval", 30, "the gate's task to be parked")
    assert (
        "ship it" in _step(parked, "gate")["reason"]
        and f"aictl task approve {gate_task}" in _step(parked, "gate")["reason"]
    )
    assert _step(_status(p, rid), "after")["status"] == "pending"  # nothing passes the gate unapproved
    assert p.cli("task", "approve", str(gate_task)).returncode == 0
    done = wait_for(lambda: (r := _status(p, rid))["status"] == "succeeded" and r, 60, "the run to finish")
    assert _step(done, "after")["outputs"]["text"].strip() == "built"  # it started from build's commit
    assert _step(done, "gate")["outputs"]["approved_by"]
    claims = p.events(gate_task, "claim")
    assert claims and all("/workflow-run-" in e["actor"] for e in claims)  # no daemon worker ran the gate
    assert p.cli("daemon", "stop").returncode == 0


CHAIN = """
version: 1
name: chain
steps:
  - id: first
    command: "{first}"
  - id: second
    needs: [first]
    command: "{second}"
  - id: third
    needs: [second]
    command: "{third}"
"""


@pytest.mark.slow
def test_a_daemon_sigkilled_mid_run_is_replaced_and_no_step_runs_twice(make_daemon_project, backend_env):
    p = make_daemon_project(env=backend_env)
    text = CHAIN.format(first=p.sleeper(0.1, "first"), second=p.sleeper(3, "second"), third=p.sleeper(0.1, "third"))
    (p.root / ".ai" / "workflows" / "chain.yaml").write_text(text)
    first = p.start("--workers", "1")
    rid = p.jcli("workflow", "run", "chain")["id"]
    wait_for(lambda: "second" in p.runs(), 60, "the second step to start")
    os.kill(first["pid"], signal.SIGKILL)  # no cleanup: its lease must expire
    for f in p.pid_dir.glob("*.pid"):
        try:
            os.killpg(int(f.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        f.unlink()
    p.start("--workers", "1")
    done = wait_for(lambda: (r := _status(p, rid))["status"] == "succeeded" and r, 120, "the second daemon to finish")
    for s in done["steps"]:
        assert s["attempt"] == 1 and len(s["tasks"]) == 1, s  # one task per step attempt, crash or not
    second = _step(done, "second")["task_id"]
    assert len(p.events(second, "complete")) == 1 and p.task(second).lease_epoch == 2
    assert p.runs().count("first") == 1 and p.runs().count("third") == 1  # the steps around the crash ran once
    assert p.runs().count("second") == 2  # the killed run, then its recovery (completed once)
    assert p.cli("daemon", "stop").returncode == 0
