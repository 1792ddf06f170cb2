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
