"""What every command promises: help that reads like a normal CLI, `-o` everywhere, `--dry-run` on every change."""

from __future__ import annotations

import re

import pytest
import typer

from aictl.cli.main import app
from aictl.cli.options import NO_DRY_RUN, NO_OUTPUT


def _commands() -> dict[str, typer.core.TyperCommand]:
    found = {}

    def walk(cmd, path):
        if getattr(cmd, "commands", None):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = cmd

    walk(typer.main.get_command(app), [])
    return found


COMMANDS = _commands()

# Commands that change nothing; every other command is a change and must take --dry-run (or be in NO_DRY_RUN).
READ_ONLY = {
    "usage",
    "route",
    "task list",
    "task get",
    "task ready",
    "task locks",
    "task evidence",
    "task workspace",
    "task diff",
    "task watch",
    "audit log",
    "audit show",
    "audit verify",
    "audit export",
    "audit evidence",
    "audit decisions",
    "audit decision",
    "policy validate",
    "policy explain",
    "policy test",
    "policy replay",
    "policy schema",
    "config show",
    "sandbox status",
    "sandbox doctor",
    "workspace list",
    "daemon status",
    "daemon logs",
    "schedule list",
    "schedule get",
    "ai list",
    "ai get",
    "ai status",
    "skill list",
    "skill show",
    "skill validate",
    "workflow validate",
    "workflow list",
    "workflow show",
    "workflow runs",
    "workflow status",
}


def _options(cmd) -> set[str]:
    return {o for p in cmd.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]}


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_help_reads_like_a_normal_cli(path, cli):
    code, out, _ = cli(*path.split(), "--help")
    assert code == 0 and out.startswith("Usage: aictl ")
    # No Python types (<bool>, <list[str]>, <int range>), no math ranges ([x>=1]), no value after a flag.
    assert not re.search(r"<(bool|str|int|float|path|list|datetime)\b|list\[|int range|x[<>]=", out), out
    for p in COMMANDS[path].params:
        if getattr(p, "is_flag", False) and p.opts:
            line = next(line for line in out.splitlines() if p.opts[-1] in line)
            assert not re.search(re.escape(p.opts[-1]) + r"(/\S+)? [A-Z]{2,}", line), line


def test_every_command_takes_output_but_the_listed_exceptions():
    missing = [p for p, cmd in COMMANDS.items() if "-o" not in _options(cmd) and p not in NO_OUTPUT]
    assert missing == []
    stale = [p for p in NO_OUTPUT if p not in COMMANDS or "-o" in _options(COMMANDS[p])]
    assert stale == []


def test_every_change_takes_dry_run_but_the_listed_exceptions():
    assert set(COMMANDS) >= READ_ONLY
    missing = [
        p
        for p, cmd in COMMANDS.items()
        if p not in READ_ONLY and p not in NO_DRY_RUN and "--dry-run" not in _options(cmd)
    ]
    assert missing == []
    stale = [p for p in NO_DRY_RUN if p not in COMMANDS or "--dry-run" in _options(COMMANDS[p])]
    assert stale == []


def test_the_exceptions_are_in_the_docs():
    from aictl.cli.docgen import render

    doc = render()
    for path in [*NO_OUTPUT, *NO_DRY_RUN]:
        assert f"| `aictl {path}` |" in doc


def test_values_are_converted_and_bad_ones_are_usage_errors(project, cli, j):
    a, b = j("task", "create", "a")["id"], j("task", "create", "b")["id"]
    c = j("task", "create", "c", "--dep", str(a), "--dep", str(b), "-p", " 7", "--label", "x,y", "--label", "z")
    assert c["dependencies"] == [a, b] and c["priority"] == 7 and c["labels"] == ["x", "y", "z"]
    assert j("task", "claim", "--owner", "w", "--ttl", "2.5")["lease"]["lease_expires_at"]
    code, _, err = cli("task", "list", "--limit", "-1")
    assert code == 2 and "Invalid value for '--limit' / '-L': -1: must be at least 0." in err
    code, _, err = cli("task", "create", "d", "--priority", "high")
    assert code == 2 and "'high' is not a valid integer." in err
    code, _, err = cli("task", "claim", "--ttl", "soon")
    assert code == 2 and "'soon' is not a valid number." in err
    code, _, err = cli("task", "get")
    assert code == 2 and "Missing argument 'TASK_ID'" in err
