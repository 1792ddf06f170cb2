"""Templates and drawings: the Jinja environment (autoescaped), the diff highlighter, the SVG chart and DAG.

Charts and the DAG are inline SVG built here from numbers and escaped text, so the page needs no
JavaScript library. Highlighting is Pygments' DiffLexer; its CSS classes are styled in static/console.css.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from markupsafe import Markup

STATUS_COLOUR = {
    "queued": "#2b8cbe",
    "blocked": "#d9a400",
    "claimed": "#6a51a3",
    "running": "#238b45",
    "awaiting_approval": "#c51b8a",
    "done": "#737373",
    "merged": "#525252",
    "failed": "#cb181d",
    "cancelled": "#969696",
}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def when(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value).replace("T", " ")[:19]


def pretty(value: Any, indent: int | None = 2) -> str:
    """JSON for reading (escaped by the template's autoescape, unlike tojson's \\u0027 for quotes)."""
    return json.dumps(value, indent=indent, sort_keys=True, ensure_ascii=False, default=str)


def highlight_diff(text: str | None) -> Markup:
    """The diff as highlighted HTML (the text was redacted by the caller; Pygments escapes it)."""
    if not text:
        return Markup("")
    from pygments import highlight  # type: ignore[import-untyped]
    from pygments.formatters import HtmlFormatter  # type: ignore[import-untyped]
    from pygments.lexers import DiffLexer  # type: ignore[import-untyped]

    return Markup(highlight(text, DiffLexer(), HtmlFormatter(cssclass="diff")))


def usage_chart(days: list[str], series: dict[str, list[dict[str, Any]]], metric: str) -> Markup:
    """Stacked bars per day, one colour per AI; `metric` is cost or tokens."""
    width, height, left, bottom = 760, 220, 60, 30
    totals = [sum(s[i][metric] for s in series.values()) for i in range(len(days))]
    top = max(totals) if totals and max(totals) > 0 else 1
    bar = (width - left - 10) / max(1, len(days))
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(metric)} per day">']
    for frac in (0, 0.5, 1):
        y = height - bottom - frac * (height - bottom - 10)
        label = f"{top * frac:.4f}" if metric == "cost" else f"{int(top * frac)}"
        parts.append(f'<line x1="{left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for i, day in enumerate(days):
        y = height - bottom
        for n, (ai, cells) in enumerate(sorted(series.items())):
            value = cells[i][metric]
            if value <= 0:
                continue
            h = value / top * (height - bottom - 10)
            y -= h
            parts.append(
                f'<rect x="{left + i * bar + 2:.1f}" y="{y:.1f}" width="{bar - 4:.1f}" height="{h:.1f}"'
                f' fill="{PALETTE[n % len(PALETTE)]}"><title>{escape(ai)} {escape(day)}: {value}</title></rect>'
            )
        if i % 2 == 0 or len(days) <= 7:
            x = left + (i + 0.5) * bar
            parts.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle">{escape(day[5:])}</text>')
    parts.append("</svg>")
    legend = "".join(
        f'<span class="swatch" style="background:{PALETTE[n % len(PALETTE)]}"></span>{escape(ai)} '
        for n, ai in enumerate(sorted(series))
    )
    return Markup("".join(parts) + f'<div class="legend">{legend}</div>')


def dag_svg(tasks: list[dict[str, Any]]) -> Markup:
    """Live tasks in layers by dependency depth, an arrow from each dependency to its dependent."""
    if not tasks:
        return Markup('<p class="empty">no live tasks</p>')
    by_id = {t["id"]: t for t in tasks}
    depth: dict[int, int] = {}

    def level(tid: int, seen: frozenset[int] = frozenset()) -> int:
        if tid in depth:
            return depth[tid]
        deps = [d for d in by_id[tid].get("dependencies", []) if d in by_id and d not in seen]
        depth[tid] = 1 + max((level(d, seen | {tid}) for d in deps), default=-1)
        return depth[tid]

    layers: dict[int, list[int]] = {}
    for t in tasks:
        layers.setdefault(level(t["id"]), []).append(t["id"])
    col_w, row_h, node_w, node_h = 190, 44, 170, 30
    width = col_w * len(layers) + 20
    height = row_h * max(len(v) for v in layers.values()) + 20
    pos = {tid: (10 + x * col_w, 10 + y * row_h) for x, ids in layers.items() for y, tid in enumerate(ids)}
    parts = [f'<svg class="dag" viewBox="0 0 {width} {height}" width="{width}" height="{height}">']
    parts.append(
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6"'
        ' orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker></defs>'
    )
    for t in tasks:
        for d in t.get("dependencies", []):
            if d in pos:
                (x1, y1), (x2, y2) = pos[d], pos[t["id"]]
                parts.append(
                    f'<line x1="{x1 + node_w}" y1="{y1 + node_h / 2}" x2="{x2}" y2="{y2 + node_h / 2}"'
                    ' class="edge" marker-end="url(#arrow)"/>'
                )
    for t in tasks:
        x, y = pos[t["id"]]
        why = "; ".join(t.get("why_not") or []) or ("ready" if t.get("ready") else t["status"])
        title = escape(f"#{t['id']} {t['title']} ({t['status']}): {why}")
        label = escape(f"#{t['id']} {t['title']}"[:24])
        colour = STATUS_COLOUR.get(t["status"], "#999")
        ring = ' stroke="#000" stroke-width="2"' if t.get("ready") else ""
        parts.append(
            f'<a href="/tasks/{int(t["id"])}"><g class="node"><title>{title}</title>'
            f'<rect x="{x}" y="{y}" width="{node_w}" height="{node_h}" rx="5" fill="{colour}"{ring}/>'
            f'<text x="{x + 6}" y="{y + 19}">{label}</text></g></a>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def environment() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("aictl.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["diff"] = highlight_diff
    env.filters["pretty"] = pretty
    env.filters["compact"] = lambda v: pretty(v, indent=None)
    env.globals.update(status_colour=STATUS_COLOUR, usage_chart=usage_chart, dag_svg=dag_svg)
    return env


__all__ = ["dag_svg", "environment", "highlight_diff", "usage_chart", "when"]
