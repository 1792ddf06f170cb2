"""Generate docs/cli.md from the command tree: `python -m aictl.cli.docgen > docs/cli.md`."""

from __future__ import annotations

import re
import sys
from typing import Any

import typer

from aictl.cli.main import app

HEADER = """# Command reference

Generated from the code by `python -m aictl.cli.docgen > docs/cli.md`; a test keeps it current.

Every command takes `-o table|json|yaml|name` where it prints data (env `AICTL_OUTPUT`).
Exit codes: 0 ok · 1 failure · 2 usage · 3 not found / nothing to claim · 4 conflict or lease lost ·
5 policy denied · 130 interrupted.
"""


def _walk(cmd: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    out = [(path, cmd)]
    for name in sorted(getattr(cmd, "commands", {}) or {}):
        out += _walk(cmd.commands[name], [*path, name])
    return out


def render() -> str:
    root = typer.main.get_command(app)
    lines = [HEADER]
    for path, cmd in _walk(root, ["aictl"]):
        if getattr(cmd, "commands", None) and len(path) > 1:
            lines.append(f"\n## {' '.join(path)}\n\n{(cmd.help or '').strip()}\n")
            continue
        if len(path) == 1:
            continue
        ctx = typer.Context(cmd, info_name=" ".join(path))
        pieces = [re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), x) for x in cmd.collect_usage_pieces(ctx)]
        lines.append(f"\n### `{' '.join(path)} {' '.join(pieces)}`\n\n{(cmd.help or '').strip()}\n")
        rows = []
        for p in cmd.params:
            if getattr(p, "hidden", False) or p.name == "help":
                continue
            names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts]) if p.param_type_name == "option" \
                else f"`{(p.metavar or p.name).upper()}`"
            help_text = (getattr(p, "help", None) or "").replace("|", "\\|")
            rows.append(f"| {names} | {help_text} |")
        if rows:
            lines += ["| option | meaning |", "| --- | --- |", *rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
