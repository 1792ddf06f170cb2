"""Reusable option aliases, so every command spells a flag the same way."""

from typing import Annotated

import typer

OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="Output format: table, json, yaml or name (env AICTL_OUTPUT).",
        metavar="FORMAT",
        show_default=False,
    ),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Do everything but commit; print what would happen.")]
OwnerOpt = Annotated[
    str | None, typer.Option("--owner", help="Lease owner (default: the configured actor, user@host).")
]
EpochOpt = Annotated[int, typer.Option("--epoch", help="Lease epoch returned by the claim (fencing token).")]
TaskIdArg = Annotated[int, typer.Argument(help="Task id.", show_default=False)]


def noun_app(help: str) -> typer.Typer:
    """A noun's sub-app: plain click help (Typer's rich panels import rich, ~0.1 s, and print `<bool>` after flags)."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


# The README's promise: every command takes -o, every command that changes something takes --dry-run.
# These are the exceptions, each with why (tests/cli/test_conventions.py holds the code to it; docs/cli.md lists them).
NO_OUTPUT = {
    "audit evidence": "prints the stored evidence bytes verbatim, as cat would",
    "mcp serve": "speaks the Model Context Protocol on stdio or HTTP; its replies are MCP messages",
    "console": "serves web pages and /metrics; its output is HTTP",
}
NO_DRY_RUN = {
    "init": "creates files in the working tree; run it in a scratch directory to see what it writes",
    "task execute": "its effect is an agent's run in a sandbox, which cannot be rolled back",
    "sandbox build": "builds a container image, outside the store",
    "sandbox run": "runs a command in a sandbox, outside the store",
    "daemon start": "starts a process",
    "daemon stop": "stops a process",
    "notify test": "its whole point is to send a test notification",
    "skill test": "runs an agent, in a throwaway project it deletes afterwards; the project itself is untouched",
    "mcp serve": "starts a server; each tool that changes something takes dry_run where the CLI command does",
    "console": "starts a server; approve and reject in it act at once, as the CLI's do without --dry-run",
    "plan": "runs a planning AI (a task of its own); nothing else changes without --apply",
    "workflow run": "its effect is agents' and commands' runs in a sandbox, which cannot be rolled back",
    "workflow resume": "its effect is agents' and commands' runs in a sandbox, which cannot be rolled back",
}
