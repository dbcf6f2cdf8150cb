"""The store's read connections: reads without the write lock see committed rows only, and a
write attempted while reading is refused and reported so the request can rerun as a write."""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest

from d365_components.emulator import defaults
from d365_components.emulator.storage.seed import profile_schema
from d365_components.emulator.storage.store import NeedsWriter, Store


@pytest.fixture
def store():
    store = Store(profile_schema("none"))
    yield store
    store.close()


def test_a_reader_sees_committed_rows_and_not_an_open_transaction(store):
    row = store.insert("account", {"name": "committed"}, user=defaults.APP_USER_ID)
    seen: list[object] = []

    def read() -> None:
        with store.reading():
            seen.append(store.get("account", row["accountid"]))
            seen.append(store.count("account", "t0.name = ?", ["pending"]))

    with store.transaction():
        store.insert("account", {"name": "pending"}, user=defaults.APP_USER_ID)
        reader = threading.Thread(target=read)      # runs while this thread holds the write lock
        reader.start()
        reader.join(10)
    assert seen == [row, 0]
    assert store.count("account", "t0.name = ?", ["pending"]) == 1


def test_writes_while_reading_are_refused_and_reported(store):
    with store.reading():
        assert store.is_reading
        with pytest.raises(NeedsWriter):
            store.insert("account", {"name": "no"}, user=defaults.APP_USER_ID)
        assert store.take_write_attempt()
        with pytest.raises(sqlite3.DatabaseError):
            store.conn.execute("DELETE FROM account")
        assert store.take_write_attempt()
        assert not store.take_write_attempt()
    assert not store.is_reading


def test_reading_inside_a_write_keeps_the_writers_view(store):
    with store.transaction():
        store.insert("account", {"name": "mine"}, user=defaults.APP_USER_ID)
        with store.reading():
            assert not store.is_reading
            assert store.count("account", "t0.name = ?", ["mine"]) == 1


def test_closing_removes_the_in_memory_database_file():
    store = Store(profile_schema("none"))
    path = store.file
    store.close()
    assert not any(os.path.exists(path + suffix) for suffix in ("", "-wal", "-shm"))
