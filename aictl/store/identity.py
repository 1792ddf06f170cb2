"""Which store this is, so a store that vanished or was replaced under a process is noticed, not recreated.

A store's id is the time its first migration was applied (``schema_migrations`` version 1): set once
when the store is created, never rewritten. ``<home>/store-id`` records the id of the project's store
and its path (written by `aictl init`; a store at another path is not compared). SQLite stores are
also known by their file's (device, inode).

- `expect_existing` (CLI commands and the daemon, never `aictl init`): an initialised project whose
  SQLite file is gone or empty is refused instead of silently getting a new empty store.
- `StoreWatch` (the daemon's loop): the file deleted, emptied or replaced (another inode), or a store
  with another id behind the same URL, stops the daemon with `StoreReplaced`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aictl.domain.errors import AictlError
from aictl.store.base import Store

MARKER = "store-id"
_HINT = "`aictl init` creates a new, empty store (tasks and audit log start over); or put the old state.db back"


class StoreReplaced(AictlError):
    """The project's store is gone or is not the one this project (or this process) was using."""

    code = "store_replaced"


def store_id(store: Store) -> str | None:
    with store.read() as tx:
        row = tx.one("SELECT applied_at FROM schema_migrations WHERE version = 1")
    return None if row is None else repr(float(row["applied_at"]))


def sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def expect_existing(url: str, home: Path | None) -> None:
    """Refuse to let open_store create a new SQLite store for a project that already had one."""
    path = sqlite_path(url)
    if path is None or home is None or not (Path(home) / "config.yaml").exists():
        return
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise StoreReplaced(f"the project's store {path} is gone (deleted?)", hint=_HINT) from None
    if size == 0:
        raise StoreReplaced(f"the project's store {path} is empty (truncated?)", hint=_HINT)


def write_marker(store: Store, home: Path) -> None:
    sid, path = store_id(store), sqlite_path(store.url)
    if sid is not None and path is not None:
        (Path(home) / MARKER).write_text(f"{sid} {path.resolve()}\n", encoding="utf-8")


def check_marker(store: Store, home: Path | None) -> None:
    """The store must be the one `aictl init` recorded for this project (no marker yet: record it)."""
    if home is None or not (Path(home) / "config.yaml").exists() or sqlite_path(store.url) is None:
        return
    marker = Path(home) / MARKER
    try:
        want, _, where = marker.read_text(encoding="utf-8").strip().partition(" ")
    except FileNotFoundError:
        write_marker(store, home)  # a project from before markers: adopt its store
        return
    path = sqlite_path(store.url)
    if path is None or where != str(path.resolve()):
        return  # the marker is about another file (database_url points elsewhere)
    if store_id(store) != want:
        raise StoreReplaced(
            f"{store.url.split('///', 1)[-1]} is not this project's store (it was replaced)", hint=_HINT
        )


@dataclass
class StoreWatch:
    """What a long-running process saw when it opened its store; `check` raises if that changed."""

    url: str
    sid: str | None
    file: tuple[int, int] | None

    @classmethod
    def of(cls, store: Store) -> StoreWatch:
        path = sqlite_path(store.url)
        st = os.stat(path) if path is not None else None
        return cls(store.url, store_id(store), (st.st_dev, st.st_ino) if st is not None else None)

    def check(self, store: Store, *, deep: bool = True) -> None:
        """Cheap for SQLite (one stat); with `deep`, PostgreSQL's id is read again through `store`."""
        path = sqlite_path(self.url)
        if path is not None:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise StoreReplaced(f"the store {path} was deleted under this process", hint=_HINT) from None
            if (st.st_dev, st.st_ino) != self.file:
                raise StoreReplaced(f"the store {path} was replaced by another file under this process", hint=_HINT)
            if st.st_size == 0:
                raise StoreReplaced(f"the store {path} was emptied under this process", hint=_HINT)
        elif deep and store_id(store) != self.sid:
            raise StoreReplaced("the database behind this process's store URL is another store now", hint=_HINT)
