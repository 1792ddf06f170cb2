"""The daemon's files under ``<home>/daemon/`` (the layout is drawn in process.py) and status.json.

Read and written by the process control (process.py), the loop (status.json) and the log (logs.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DaemonPaths:
    dir: Path

    @classmethod
    def for_home(cls, home: Path) -> DaemonPaths:
        return cls(Path(home) / "daemon")

    @property
    def lock(self) -> Path:
        return self.dir / "daemon.lock"

    @property
    def pid(self) -> Path:
        return self.dir / "daemon.pid"

    @property
    def status(self) -> Path:
        return self.dir / "status.json"

    @property
    def log(self) -> Path:
        return self.dir / "daemon.log"

    @property
    def out(self) -> Path:
        return self.dir / "daemon.out"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_status(paths: DaemonPaths) -> dict[str, Any] | None:
    return read_json(paths.status)


def write_status(paths: DaemonPaths, data: dict[str, Any]) -> None:
    """Atomically replace status.json (readers never see half a file)."""
    tmp = paths.status.with_name(f".status.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, paths.status)
