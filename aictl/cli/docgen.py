"""Generate docs/cli.md from the command tree: `python -m aictl.cli.docgen > docs/cli.md`."""

from __future__ import annotations

import sys
from typing import Any

import typer

from aictl.cli.main import app
from aictl.cli.options import NO_DRY_RUN, NO_OUTPUT

HEADER = """# Command reference

Generated from the code by `python -m aictl.cli.docgen > docs/cli.md`; a test keeps it current.

Every command takes `-o table|json|yaml|name` (env `AICTL_OUTPUT`) and every command that changes
something takes `--dry-run` (it does the work, then rolls it back), except those listed at the end.
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
        pieces = cmd.collect_usage_pieces(ctx)
        lines.append(f"\n### `{' '.join(path)} {' '.join(pieces)}`\n\n{(cmd.help or '').strip()}\n")
        rows = []
        for p in cmd.params:
            if getattr(p, "hidden", False) or p.name == "help":
                continue
            record = p.get_help_record(ctx)
            names = f"`{record[0]}`" if record else f"`{p.name}`"
            help_text = (record[1] if record else "").replace("|", "\\|")
            rows.append(f"| {names} | {help_text} |")
        if rows:
            lines += ["| option | meaning |", "| --- | --- |", *rows]
    lines.append("\n## Exceptions to -o and --dry-run\n")
    lines += ["| command | why |", "| --- | --- |"]
    lines += [f"| `aictl {name}` | no `-o`: {why} |" for name, why in NO_OUTPUT.items()]
    lines += [f"| `aictl {name}` | no `--dry-run`: {why} |" for name, why in NO_DRY_RUN.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
