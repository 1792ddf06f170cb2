"""Workflow files: every problem reported with its file and line, CEL and templates checked at load time."""

from __future__ import annotations

import pytest

from aictl.workflows.expr import ExpressionError, render, render_value
from aictl.workflows.loader import WorkflowInvalid, load_text
from tests.workflows.conftest import EXAMPLES


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(WorkflowInvalid) as e:
        load_text(text, "wf.yaml")
    assert e.value.message.startswith("workflow wf.yaml is invalid")
    return [(i["line"], i["message"]) for i in e.value.details["issues"]]


def test_every_example_loads():
    names = {load_text(p.read_text(), str(p)).name for p in EXAMPLES.glob("*.yaml")}
    assert names == {"feature", "bugfix", "dependency-bump", "fan-out"}


def test_unknown_keys_are_named_at_their_line():
    got = problems("version: 1\nname: x\nstep: []\nsteps:\n  - id: a\n    command: echo\n    retries: 3\n")
    assert (3, "unknown key 'step'; allowed keys: version, name, description, policy, inputs, steps") in got
    assert any(line == 7 and "step a: unknown key 'retries'" in msg for line, msg in got)


def test_a_cycle_in_needs_is_refused_but_a_bounded_goto_is_not():
    got = problems(
        "version: 1\nname: x\nsteps:\n  - id: a\n    needs: [b]\n    command: echo a\n"
        "  - id: b\n    needs: [a]\n    command: echo b\n"
    )
    assert got == [(5, "cycle in needs: a → b → a (loop back only through a goto with a bounded retry)")]
    ok = load_text(
        "version: 1\nname: x\nsteps:\n  - id: a\n    command: echo a\n    retry: {until: 'true', max: 2}\n"
        "  - id: back\n    needs: [a]\n    when: 'false'\n    goto: a\n",
        "wf.yaml",
    )
    assert ok.step("back").kind == "goto"
    unbounded = problems(
        "version: 1\nname: x\nsteps:\n  - id: a\n    command: echo a\n"
        "  - id: back\n    needs: [a]\n    when: 'true'\n    goto: a\n"
    )
    assert unbounded == [(9, "step back: goto 'a' is unbounded; give a a retry with max (the loop counts there)")]


def test_unknown_steps_inputs_and_bad_cel_are_named():
    got = problems(
        "version: 1\nname: x\ninputs:\n  goal: {type: string}\nsteps:\n"
        "  - id: a\n    prompt: 'do ${{ inputs.gaol }}'\n"
        "  - id: b\n    needs: [a]\n    when: steps.c.status == 'succeeded'\n    command: echo\n"
        "  - id: c\n    command: echo\n    when: '1 +'\n"
    )
    lines = dict(got)
    assert "unknown input 'gaol'" in lines[7]
    assert "unknown step 'c'" not in lines.get(10, "")  # c exists (later in the file is fine)
    assert "bad CEL '1 +': at character 4" in lines[14]


def test_an_unknown_step_in_an_expression_and_a_missing_kind():
    got = problems("version: 1\nname: x\nsteps:\n  - id: a\n    when: steps.zz.outputs.v == 1\n")
    assert (4, "step a: give exactly one of prompt, command, approval, merge, goto (found: none)") in got
    assert (5, "step a: when: unknown step 'zz' in 'steps.zz.outputs.v == 1'") in got


def test_yaml_syntax_and_repeated_keys_name_file_and_line():
    from aictl.domain.errors import ConfigError

    with pytest.raises(ConfigError, match=r"wf.yaml:5:5: invalid YAML: duplicate key 'id' \(first at line 4\)"):
        load_text("version: 1\nname: x\nsteps:\n  - id: a\n    id: b\n", "wf.yaml")


def test_templates_quote_values_for_the_shell_and_keep_lists_whole():
    ctx = {"inputs": {"who": "a b; rm -rf /", "paths": ["src/**", "docs/**"]}, "steps": {}, "run": {"id": 1}}
    assert render("echo ${{ inputs.who }}", ctx, shell=True) == "echo 'a b; rm -rf /'"
    assert render("Hello ${{ inputs.who }}", ctx) == "Hello a b; rm -rf /"
    assert render_value("${{ inputs.paths }}", ctx) == ["src/**", "docs/**"]
    assert render_value(["x/**", "${{ inputs.paths }}"], ctx) == ["x/**", "src/**", "docs/**"]
    with pytest.raises(ExpressionError, match=r"inputs\.nope"):
        render("${{ inputs.nope }}", ctx)


def test_a_policy_overlay_name_is_checked_at_its_line():
    got = problems("version: 1\nname: x\npolicy: ../etc\nsteps:\n  - id: a\n    command: echo\n")
    assert [line for line, _ in got] == [3] and "policy names a workflow overlay" in got[0][1]
