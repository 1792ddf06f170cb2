"""Reusable option aliases, so every command spells a flag the same way."""


from typing import Annotated, Optional

import typer

OutputOpt = Annotated[
    Optional[str],
    typer.Option("--output", "-o", help="Output format: table, json, yaml or name (env AICTL_OUTPUT).",
                 metavar="FORMAT", show_default=False),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Do everything but commit; print what would happen.")]
OwnerOpt = Annotated[
    Optional[str], typer.Option("--owner", help="Lease owner (default: the configured actor, user@host).")
]
EpochOpt = Annotated[int, typer.Option("--epoch", help="Lease epoch returned by the claim (fencing token).")]
TaskIdArg = Annotated[int, typer.Argument(help="Task id.", show_default=False)]


def noun_app(help: str) -> typer.Typer:
    """A noun's sub-app: plain click help (Typer's rich panels import rich, ~0.1 s, and print `<bool>` after flags)."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)
