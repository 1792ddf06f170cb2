"""`aictl task watch`: a live terminal view of the queue, or (-o json) a stream of audit events.

rich is imported only here, and only when a frame is drawn.
"""

import json
import os
import signal
import sys
import time
from typing import Any

from aictl.cli.output import ago, terminal_width

STATUS_ORDER = ("queued", "blocked", "claimed", "running", "awaiting_approval", "done", "merged", "failed", "cancelled")
STATUS_STYLE = {
    "queued": "cyan",
    "blocked": "yellow",
    "claimed": "blue",
    "running": "green",
    "awaiting_approval": "magenta",
    "done": "dim",
    "merged": "dim",
    "failed": "red",
    "cancelled": "dim",
}


def _short(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ").strip()
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _since(ts: float | None) -> str:
    return ago(ts).replace(" ago", "") if ts else "-"


def render(snap: Any, *, title: str = "") -> Any:
    """One frame: a summary line, then running, ready, approvals and failures."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    header = Text()
    header.append("aictl task watch", style="bold")
    if title:
        header.append(f"  {title}")
    header.append(f"  {time.strftime('%H:%M:%S', time.localtime(snap.at))}\n")
    shown = [s for s in STATUS_ORDER if snap.counts.get(s) or s in ("queued", "running", "awaiting_approval", "failed")]
    for i, status in enumerate(shown):
        n = snap.counts.get(status, 0)
        header.append(f"{status.replace('_', ' ')} ", style=STATUS_STYLE[status])
        header.append(str(n), style="bold" if n else "dim")
        if i < len(shown) - 1:
            header.append("   ")

    def table(name: str, columns: list[tuple[str, dict]], rows: list[list[str]], empty: str) -> Any:
        if not rows:
            return Group(Text(name, style="bold"), Text(f"  {empty}", style="dim"))
        t = Table(
            title=name,
            title_justify="left",
            title_style="bold",
            show_edge=False,
            pad_edge=False,
            box=None,
            header_style="dim",
        )
        for col, kw in columns:
            t.add_column(col, overflow="ellipsis", no_wrap=True, **kw)
        for r in rows:
            t.add_row(*r)
        return t

    running = table(
        f"Running ({snap.counts.get('claimed', 0) + snap.counts.get('running', 0)})",
        [
            ("ID", {}),
            ("STATUS", {}),
            ("AI", {"max_width": 20}),
            ("FOR", {}),
            ("TITLE", {"max_width": 40}),
            ("LATEST ACTION", {"max_width": 80}),
        ],
        [
            [str(t.id), t.status, t.ai or t.owner or "-", _since(t.since), t.title, _short(t.activity, 200) or "-"]
            for t in snap.running
        ],
        "nothing running",
    )
    ready = table(
        f"Ready ({snap.counts.get('queued', 0)} queued)",
        [("ID", {}), ("PRI", {}), ("TITLE", {"max_width": 80})],
        [
            [
                str(t.id),
                str(t.priority),
                t.title + (f"  [dim](schedule {t.schedule_id})[/dim]" if t.schedule_id else ""),
            ]
            for t in snap.ready
        ],
        "nothing ready to claim",
    )
    approvals = table(
        f"Awaiting approval ({snap.counts.get('awaiting_approval', 0)})",
        [("ID", {}), ("WAITING", {}), ("TITLE", {"max_width": 40}), ("WHY", {"max_width": 80})],
        [[str(t.id), _since(t.since), t.title, _short(t.reason, 200) or "-"] for t in snap.approvals],
        "no approvals waiting",
    )
    failures = table(
        f"Recent failures ({snap.counts.get('failed', 0)} failed)",
        [("ID", {}), ("WHEN", {}), ("TITLE", {"max_width": 40}), ("REASON", {"max_width": 80})],
        [[str(t.id), ago(t.since), t.title, _short(t.reason, 200) or "-"] for t in snap.failures],
        "no failures",
    )
    hint = Text("approve with: aictl task approve ID    details: aictl task get ID    quit: Ctrl-C", style="dim")
    return Group(header, running, Text(""), ready, Text(""), approvals, Text(""), failures, Text(""), hint)


def _console() -> Any:
    from rich.console import Console

    tty = sys.stdout.isatty()
    return Console(
        file=sys.stdout,
        width=None if tty else terminal_width(),
        no_color=bool(os.environ.get("NO_COLOR")) or (not tty and not os.environ.get("FORCE_COLOR")),
        highlight=False,
        soft_wrap=False,
    )


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_view(store: Any, *, title: str, interval: float, limit: int, once: bool) -> None:
    from aictl.tasks.watch import snapshot

    console = _console()
    if once:
        console.print(render(snapshot(store, limit=limit), title=title))
        return
    from rich.live import Live

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with Live(
            render(snapshot(store, limit=limit), title=title),
            console=console,
            auto_refresh=False,
            screen=False,
            transient=False,
        ) as live:
            while True:
                time.sleep(interval)
                live.update(render(snapshot(store, limit=limit), title=title), refresh=True)
    except KeyboardInterrupt:
        pass


def run_stream(store: Any, *, since: int | None, interval: float) -> None:
    """Print audit events as JSON lines as they are committed, from the head (or after `since`), until interrupted."""
    from aictl.tasks.watch import events_after, head_event_id

    signal.signal(signal.SIGTERM, _on_sigterm)
    out = sys.stdout
    try:
        last = head_event_id(store) if since is None else since
        delay = 0.1
        while True:
            batch = events_after(store, last)
            for event in batch:
                out.write(json.dumps(event.model_dump(mode="json"), ensure_ascii=False) + "\n")
                out.flush()
                last = event.id
            if len(batch) >= 500:
                continue
            delay = 0.1 if batch else min(interval, delay * 2)  # idle: poll less often, up to the interval
            time.sleep(delay)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # the reader went away (| head): stop quietly, and keep Python's exit-time flush from failing again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())


def snapshot_json(store: Any, *, limit: int) -> None:
    from aictl.tasks.watch import snapshot

    sys.stdout.write(json.dumps(snapshot(store, limit=limit).model_dump(mode="json"), indent=2) + "\n")
