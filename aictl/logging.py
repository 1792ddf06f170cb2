"""Structured logs (structlog) on stderr, imported only when something is actually logged.

Level: AICTL_LOG_LEVEL (debug, info, warning, error; default warning). The
daemon switches to JSON lines with `configure(json=True)`. structlog costs
~0.15 s to import, so the CLI's start-up path must not pay for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from typing import Any

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_state: dict[str, Any] = {"configured": False, "json": False, "level": None, "stream": None}


def configure(*, level: str | None = None, json: bool | None = None, stream: Any = None) -> None:
    """`stream`: where lines go instead of stderr (the daemon passes its rotating log file)."""
    if level is not None:
        _state["level"] = LEVELS[level]
    if json is not None:
        _state["json"] = json
    if stream is not None:
        _state["stream"] = stream
    _state["configured"] = False  # rebuild structlog config on next use


def _level() -> int:
    if _state["level"] is None:
        _state["level"] = LEVELS.get(os.environ.get("AICTL_LOG_LEVEL", "warning").lower(), 30)
    return _state["level"]


def _structlog() -> Any:
    import structlog

    if not _state["configured"]:
        renderer = (
            structlog.processors.JSONRenderer() if _state["json"] else structlog.dev.ConsoleRenderer(colors=False)
        )
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _redacted,
                renderer,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(_level()),
            logger_factory=structlog.PrintLoggerFactory(file=_state["stream"] or sys.stderr),
            cache_logger_on_first_use=False,
        )
        _state["configured"] = True
    return structlog


def _redacted(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: every known secret masked in every field, before any renderer sees it."""
    from aictl.domain.redact import redact

    return {k: redact(v) if isinstance(v, (str, dict, list, tuple)) else v for k, v in event_dict.items()}


class Logger:
    def __init__(self, name: str):
        self.name = name

    def _log(self, level: str, event: str, **kw: Any) -> None:
        if LEVELS[level] >= _level():
            getattr(_structlog().get_logger(self.name), level)(event, logger=self.name, **kw)

    def debug(self, event: str, **kw: Any) -> None:
        self._log("debug", event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        self._log("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._log("error", event, **kw)


def get_logger(name: str) -> Logger:
    return Logger(name)
