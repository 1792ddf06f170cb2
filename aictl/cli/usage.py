"""`aictl usage`: tokens and cost from the usage evidence, by AI, task or day (the numbers the console charts)."""

from typing import Annotated, Any

import typer

from aictl.cli.context import state
from aictl.cli.options import OutputOpt


def _cost(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


COLUMNS = [
    ("key", lambda r: r.key),
    ("runs", lambda r: r.runs),
    ("input", lambda r: r.input_tokens),
    ("output", lambda r: r.output_tokens),
    ("cache_read", lambda r: r.cache_read_tokens),
    ("tokens", lambda r: r.total_tokens),
    ("cost_usd", lambda r: _cost(r.cost_usd)),
    ("unpriced", lambda r: r.runs_without_cost),
]


def usage(
    since: Annotated[str | None, typer.Option("--since", help="Only runs since: ISO 8601 or 30m, 2h, 7d.")] = None,
    by: Annotated[str, typer.Option("--by", help="Group by: ai, task, day or workflow.")] = "ai",
    output: OutputOpt = None,
) -> None:
    """Tokens and cost of every run, from its usage evidence, grouped by AI, task or day.

    A run whose cost is unknown (no prices) is counted in `unpriced`, never as 0; a group
    with no priced run has no cost (null in JSON, '-' in the table).
    """
    from aictl.agents.usage import usage_report
    from aictl.policy.replay import parse_when

    out = state.output(output)
    settings = state.settings()
    report = usage_report(state.store(), settings.home, by=by, since=parse_when(since) if since else None)
    if out.mode in ("json", "yaml"):
        out.emit(report)
        return
    rows: list[Any] = [*report.rows, report.total] if out.mode == "table" else report.rows
    out.emit(rows, columns=[(f"{by}" if h == "key" else h, f) for h, f in COLUMNS], name=lambda r: r.key)
