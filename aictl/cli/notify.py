"""`aictl notify …`: check the configured notification channels."""

from typing import Annotated, Any

import typer

from aictl.cli.context import state
from aictl.cli.options import OutputOpt, noun_app
from aictl.cli.output import info
from aictl.domain.errors import AictlError, UsageError

app = noun_app("Notifications: where events such as task.failed are sent.")

COLUMNS = [
    ("channel", lambda d: d["channel"]),
    ("type", lambda d: d["type"]),
    ("result", lambda d: "skipped" if d["skipped"] else "delivered" if d["ok"] else "failed"),
    ("attempts", lambda d: d["attempts"] or None),
    ("status", lambda d: d["status"]),
    ("error", lambda d: d["error"]),
]


class NotifyFailed(AictlError):
    code = "notify_failed"


@app.command("test")
def test(
    event: Annotated[
        str | None, typer.Option("--event", "-e", help="Send as this event type (only to channels subscribed to it).")
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Send a test event through every configured channel, now, and report each: delivered or failed (exit 1)."""
    from aictl.config import NOTIFY_EVENTS
    from aictl.daemon.notify import Notifier

    out = state.output(output)
    settings = state.settings()
    if event is not None and event not in NOTIFY_EVENTS:
        raise UsageError(f"unknown event {event!r}", hint=f"use one of: {', '.join(NOTIFY_EVENTS)}")
    if not settings.notifications:
        raise AictlError(
            "no notification channels are configured",
            hint="add a `notifications:` list to .ai/config.yaml (see docs/notifications.md)",
        )
    notifier = Notifier.from_settings(settings)
    payload: dict[str, Any] = {"message": "test notification from aictl notify test", "test": True}
    if event is not None and event.startswith("task."):
        payload.update(task_id=0, title="aictl notify test", status=event.split(".", 1)[1])
    results = notifier.send_now(event or "test", payload, all_channels=event is None)
    rows = [r.to_dict() for r in results]
    out.emit(rows, columns=COLUMNS, name=lambda d: d["channel"])
    failed = [r for r in results if not r.ok and not r.skipped]
    if failed:
        raise NotifyFailed(
            f"{len(failed)} of {len(results)} channel(s) failed: "
            + "; ".join(f"{r.channel}: {r.error}" for r in failed)
        )
    if out.mode == "table" and all(r.skipped for r in results):
        info(f"no channel is subscribed to {event}")
