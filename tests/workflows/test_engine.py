"""The engine with command steps, run in the foreground: fan-out and join, a skipped branch, a loop that hits
its max, outputs from stdout, shell quoting of values, and crash-safe advancing (no step attempt gets two tasks)."""

from __future__ import annotations

import json

import pytest

FAN = """
version: 1
name: fan
inputs:
  items: {type: list, default: ["a", "b c", "d;rm -rf x"]}
  mode: {type: string, default: fast}
steps:
  - id: each
    for_each: ${{ inputs.items }}
    command: "echo '{\\"got\\": \\"'${{ item }}'\\"}'"
    outputs: {got: result.got}
  - id: slow
    needs: [each]
    when: inputs.mode == "slow"
    command: "echo slow"
  - id: after_slow
    needs: [slow]
    command: "echo never"
  - id: join
    needs: [each]
    command: "echo joined ${{ steps.each.outputs.size() }}"
    outputs: {line: stdout}
"""


def test_fan_out_join_and_a_skipped_branch(wf):
    wf.write("fan", FAN)
    run = wf.run(wf.load("fan"))
    assert run.status == "succeeded", run.reason
    st = run.steps
    assert st["each"].status == "succeeded" and len(st["each"].tasks) == 3
    assert [o["got"] for o in st["each"].outputs] == ["a", "b c", "d;rm -rf x"]  # quoted: one word each, never code
    assert st["slow"].status == "skipped" and 'inputs.mode == "slow"' in st["slow"].reason
    assert st["after_slow"].status == "skipped" and "needs slow, which was skipped" in st["after_slow"].reason
    assert st["join"].outputs["line"].strip() == "joined 3"
    join = wf.task(st["join"].task_id)
    assert sorted(join.dependencies) == sorted(st["each"].tasks)  # the join starts from every item's commit
    assert f"workflow-run:{run.id}" in join.labels and "workflow-step:join" in join.labels


LOOP = """
version: 1
name: loop
steps:
  - id: build
    command: "echo attempt > attempt.txt"
    locks: ["attempt.txt"]
    verify: "test ${{ run.id }} -ge 99"
    retry: {until: steps.build.verify.passed, max: 3}
"""


def test_a_loop_that_hits_max_fails_the_run_with_the_last_evidence(wf):
    wf.write("loop", LOOP)
    run = wf.run(wf.load("loop"))
    assert run.status == "failed"
    st = run.steps["build"]
    assert st.status == "failed" and st.attempt == 3 and len(st.tasks) == 3
    assert "after 3 attempt(s)" in st.reason and "exited 1" in st.reason  # the last verify is in the reason
    # Each next attempt was told why the previous one failed.
    second = wf.task(st.tasks[1])
    assert (
        "Feedback from the previous attempt" in second.description and "Attempt 1 of step build" in second.description
    )
    assert [wf.task(t).status for t in st.tasks] == ["failed"] * 3


def test_advancing_is_idempotent_and_creates_each_attempt_once(wf):
    wf.write("fan", FAN)
    run = wf.engine.start(wf.load("fan"), {})
    tasks = run.steps["each"].tasks
    for _ in range(3):  # nothing finished: advancing again changes nothing
        again = wf.engine.advance(run.id)
        assert again.steps["each"].tasks == tasks
    with wf.store.read() as tx:
        n = tx.one("SELECT COUNT(*) AS n FROM tasks")["n"]
    assert n == 3


def test_missing_input_and_unknown_input_are_refused(wf):
    from aictl.domain.errors import UsageError

    wf.write(
        "need",
        "version: 1\nname: need\ninputs:\n  goal: {type: string, required: true}\n"
        "steps:\n  - id: a\n    command: echo ${{ inputs.goal }}\n",
    )
    w = wf.load("need")
    with pytest.raises(UsageError, match="needs input 'goal'"):
        wf.engine.start(w, {})
    with pytest.raises(UsageError, match="no input 'nope'"):
        wf.engine.start(w, {"goal": "x", "nope": "y"})
    run = wf.run(w, goal="it's $(whoami)")
    out = json.loads(json.dumps(run.model_dump()))
    assert out["status"] == "succeeded" and out["steps"][0]["status"] == "succeeded"


GOTO = """
version: 1
name: bounce
steps:
  - id: build
    command: "echo built"
    retry: {until: "true", max: 2}
  - id: review
    needs: [build]
    command: "echo '{\\"verdict\\": \\"CHANGES\\", \\"why\\": \\"still wrong\\"}'"
    outputs: {verdict: result.verdict, why: result.why}
  - id: back
    needs: [review]
    when: steps.review.outputs.verdict == "CHANGES"
    goto: build
  - id: ship
    needs: [review]
    when: steps.review.outputs.verdict == "APPROVE"
    command: "echo shipped"
"""


def test_a_goto_loop_is_bounded_by_its_targets_max_and_feeds_the_review_back(wf):
    wf.write("bounce", GOTO)
    run = wf.run(wf.load("bounce"))
    assert run.status == "failed"
    st = run.steps
    assert st["build"].attempt == 2 and st["review"].attempt == 2  # went back once, then the bound held
    assert st["back"].status == "failed" and "loop limit is reached (2 of retry.max 2)" in st["back"].reason
    assert "still wrong" in st["back"].reason  # the last evidence: what the review said
    assert st["ship"].status == "skipped"
    second = wf.task(st["build"].tasks[1])
    assert "still wrong" in second.description  # the second attempt was told why
    assert st["build"].tasks[0] in second.dependencies  # and built on the first (done) attempt
    finished = wf.events("workflow_finish")
    assert len(finished) == 1 and '"failed"' in finished[0]["data"]


def test_a_wide_fan_in_depends_only_on_the_items_that_made_a_commit(wf):
    items = list(range(70))  # more than a task may depend on
    wf.write(
        "wide",
        "version: 1\nname: wide\ninputs:\n  items: {type: list}\nsteps:\n"
        "  - id: each\n    for_each: ${{ inputs.items }}\n    command: 'true'\n"
        "  - id: join\n    needs: [each]\n    command: 'true'\n",
    )
    run = wf.engine.start(wf.load("wide"), {"items": items})
    assert len(run.steps["each"].tasks) == 70
    run = wf.drive(run.id)
    assert run.status == "succeeded", run.reason
    assert wf.task(run.steps["join"].task_id).dependencies == []  # none changed a file: the join starts from base


def test_a_policy_rule_for_one_workflows_steps_parks_them_until_approved(wf):
    """Per-workflow policy: steps carry the label workflow:<name>, which a rule's task_labels matches."""
    policy = wf.root / ".ai" / "policy.yaml"
    policy.write_text(
        policy.read_text() + "  - id: hello-steps-need-a-human\n    effect: require_approval\n"
        "    match: {actions: [execute], task_labels: ['workflow:hello']}\n"
    )
    wf.write("hello", "version: 1\nname: hello\nsteps:\n  - id: a\n    command: echo hi\n")
    wf.write("other", "version: 1\nname: other\nsteps:\n  - id: a\n    command: echo hi\n")
    assert wf.drive(wf.engine.start(wf.load("other"), {}).id, policy=True).status == "succeeded"
    run = wf.drive(wf.engine.start(wf.load("hello"), {}).id, policy=True)
    st = run.steps["a"]
    assert run.status == "running" and st.status == "running"
    assert st.reason == f"task {st.task_id} awaits approval (policy): aictl task approve {st.task_id}"
    wf.engine.svc.approve(st.task_id)
    run = wf.drive(run.id, policy=True)
    assert run.status == "succeeded" and run.steps["a"].attempt == 1
