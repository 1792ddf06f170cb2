"""One output object for every command: table | json | yaml | name.

Stdout carries data only; messages, hints and errors go to stderr. Tables are
aligned on a terminal and tab-separated (no header) when piped, like gh.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

FORMATS = ("table", "json", "yaml", "name")


class Output:
    def __init__(self, mode: str = "table"):
        self.mode = mode

    # -- data ---------------------------------------------------------------

    def _plain(self, data: Any) -> Any:
        if hasattr(data, "model_dump"):
            return data.model_dump(mode="json")
        if isinstance(data, (list, tuple)):
            return [self._plain(d) for d in data]
        if isinstance(data, dict):
            return {k: self._plain(v) for k, v in data.items()}
        return data

    def emit(
        self,
        data: Any,
        *,
        columns: Sequence[tuple[str, Callable[[Any], Any]]] | None = None,
        name: Callable[[Any], Any] | None = None,
        human: Callable[[Any], str] | None = None,
    ) -> None:
        """Print a model or a list of models in the chosen format."""
        if self.mode == "json":
            sys.stdout.write(json.dumps(self._plain(data), indent=2, ensure_ascii=False) + "\n")
        elif self.mode == "yaml":
            import yaml

            sys.stdout.write(yaml.safe_dump(self._plain(data), sort_keys=False, allow_unicode=True))
        elif self.mode == "name":
            items = data if isinstance(data, list) else [data]
            for item in items:
                sys.stdout.write(f"{name(item) if name else getattr(item, 'id', item)}\n")
        elif human is not None and not isinstance(data, list):
            sys.stdout.write(human(data) + "\n")
        else:
            items = data if isinstance(data, list) else [data]
            cols = columns or [(k, (lambda key: lambda o: getattr(o, key, None))(k)) for k in self._keys(items)]
            self.table(items, cols)

    @staticmethod
    def _keys(items: list[Any]) -> list[str]:
        if items and hasattr(items[0], "model_dump"):
            return list(items[0].model_dump().keys())
        return list(items[0].keys()) if items and isinstance(items[0], dict) else []

    def table(self, items: Iterable[Any], columns: Sequence[tuple[str, Callable[[Any], Any]]]) -> None:
        rows = [[cell(fn(item)) for _, fn in columns] for item in items]
        if not sys.stdout.isatty():
            for r in rows:
                sys.stdout.write("\t".join(r) + "\n")
            return
        header = [h.upper() for h, _ in columns]
        if not rows:
            info("no results")
            return
        widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
        limit = terminal_width()
        for r in [header, *rows]:
            line = "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
            sys.stdout.write((line[: limit - 1] + "…" if len(line) > limit else line) + "\n")


def cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ",".join(cell(x) for x in v) or "-"
    if hasattr(v, "value"):
        return str(v.value)
    return str(v).replace("\t", " ").replace("\n", " ")


def ago(ts: float | None) -> str:
    """Time from now, for humans: 'in 12s', '3m ago'."""
    if ts is None:
        return "-"
    import time

    d = ts - time.time()
    past, d = d < 0, abs(d)
    span = f"{int(d)}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if d >= size:
            span = f"{int(d // size)}{unit}"
            break
    return f"{span} ago" if past else f"in {span}"


def iso(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def terminal_width() -> int:
    try:
        return int(os.environ.get("COLUMNS") or os.get_terminal_size(sys.stdout.fileno()).columns)
    except (OSError, ValueError):
        return 120


def use_color(stream: Any = sys.stderr) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty()


def info(msg: str) -> None:
    """A human message on stderr (never data)."""
    sys.stderr.write(msg + "\n")
