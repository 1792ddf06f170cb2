"""StoreWatch: a store replaced behind its URL (another id on PostgreSQL, another file on SQLite) is noticed."""

from __future__ import annotations

import pytest

from aictl.store import open_store
from aictl.store.identity import StoreReplaced, StoreWatch, store_id


def test_same_store_passes_and_a_replaced_one_is_named(store_url, tmp_path):
    store = open_store(store_url)
    try:
        watch = StoreWatch.of(store)
        assert watch.sid == store_id(store) and watch.sid is not None
        watch.check(store)  # unchanged
        if store.dialect == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                (tmp_path / f"state.db{suffix}").unlink(missing_ok=True)
            with pytest.raises(StoreReplaced, match="deleted"):
                watch.check(store)
            fresh = open_store(store_url)  # a new file at the same path: another inode
            fresh.close()
            with pytest.raises(StoreReplaced, match="replaced"):
                watch.check(store)
        else:  # the schema dropped and created again: the same URL, another store
            with store.write() as tx:
                tx.run("UPDATE schema_migrations SET applied_at = applied_at + 1 WHERE version = 1")
            watch.check(store, deep=False)  # the cheap check does not ask PostgreSQL
            with pytest.raises(StoreReplaced, match="another store"):
                watch.check(store)
    finally:
        store.close()
