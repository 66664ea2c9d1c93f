"""The store remembers how each endpoint takes structured output, per model, across opens;
a store from before the table existed (version 4) is upgraded with its data intact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from keel.store import MIGRATIONS, SqliteStore, store_path

URL = "http://127.0.0.1:8080/v1"


async def test_a_mode_is_remembered_per_endpoint_and_model_across_reopens(tmp_path: Path) -> None:
    path = store_path(tmp_path)
    store = await SqliteStore.open(path)
    try:
        assert await store.structured_mode(URL, "qwen") is None
        await store.remember_structured_mode(URL, "qwen", "json_object")
        await store.remember_structured_mode(URL, "other", "tools")
        await store.remember_structured_mode("http://elsewhere/v1", "qwen", "prompt")
    finally:
        await store.close()
    store = await SqliteStore.open(path)
    try:
        assert await store.structured_mode(URL, "qwen") == "json_object"
        assert await store.structured_mode(URL, "other") == "tools"
        assert await store.structured_mode("http://elsewhere/v1", "qwen") == "prompt"
        await store.remember_structured_mode(URL, "qwen", "tools")  # the newest wins
        assert await store.structured_mode(URL, "qwen") == "tools"
        assert len(await store.structured_modes()) == 3
    finally:
        await store.close()


async def test_a_version_4_store_gains_the_table_and_keeps_its_sessions(tmp_path: Path) -> None:
    path = store_path(tmp_path)
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.executescript("".join(MIGRATIONS[:4]) + "PRAGMA user_version = 4;")
        conn.execute(
            "INSERT INTO sessions (id, task, config, started_at) VALUES ('s1', 't', '{}', 'x')"
        )
    store = await SqliteStore.open(path)
    try:
        assert [s.id for s in await store.sessions()] == ["s1"]
        assert await store.structured_mode(URL, "qwen") is None
        await store.remember_structured_mode(URL, "qwen", "json_object")
        assert await store.structured_mode(URL, "qwen") == "json_object"
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 5
