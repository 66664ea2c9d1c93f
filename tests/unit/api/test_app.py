"""The API application: its routes and its OpenAPI document agree, the token is checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from keel.api import api_token, build_api_app
from keel.api.openapi import document

TOKEN = "unit-token-0123456789"


def test_every_route_is_in_the_openapi_document_and_nothing_else(tmp_path: Path) -> None:
    app = build_api_app([tmp_path], token=TOKEN, env={})
    routes = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    paths = document()["paths"]
    described = {(path, method) for path, ops in paths.items() for method in ops}
    assert routes == described


def test_the_document_names_its_request_schemas() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    start = schemas["StartBody"]
    assert set(start["required"]) == {"task", "workspace"}
    assert {"maxCost", "maxSteps", "mode", "model"} <= set(start["properties"])
    assert start["additionalProperties"] is False
    refs = [
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for ops in doc["paths"].values()
        for op in ops.values()
        if "requestBody" in op
    ]
    assert all(ref.rsplit("/", 1)[1] in schemas for ref in refs)


def test_a_short_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        build_api_app([tmp_path], token="short", env={})


def test_the_app_mounts_under_api_v1(tmp_path: Path) -> None:
    root = web.Application()
    root.add_subapp("/api/v1", build_api_app([tmp_path], token=TOKEN, env={}))
    canonical = {r.canonical for r in root.router.resources()}
    assert "/api/v1" in canonical


def test_the_token_variable_is_named_by_the_user_config_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config" / "keel").mkdir(parents=True)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    assert api_token({**env, "KEEL_API_TOKEN": TOKEN}) == TOKEN
    assert api_token(env) is None
    (home / ".config" / "keel" / "config.toml").write_text(
        '[dashboard]\napi_token_env = "CI_KEEL_TOKEN"\n'
    )
    assert api_token({**env, "KEEL_API_TOKEN": TOKEN}) is None
    assert api_token({**env, "CI_KEEL_TOKEN": TOKEN}) == TOKEN


def test_the_token_is_not_in_the_sessions_environment(tmp_path: Path) -> None:
    from keel.api.app import MANAGER

    app = build_api_app([tmp_path], token=TOKEN, env={"KEEL_API_TOKEN": TOKEN, "PATH": "/bin"})
    assert TOKEN not in app[MANAGER]._env.values()
    assert app[MANAGER]._env["PATH"] == "/bin"


async def test_concurrent_readers_share_one_store_connection(tmp_path: Path) -> None:
    """Two streams opening a workspace at once must not leak a connection (its thread kept
    the server from exiting on SIGTERM)."""
    import asyncio

    from keel.api.sessions import SessionManager
    from keel.store import SqliteStore

    workspace = tmp_path / "ws"
    workspace.mkdir()
    await (await SqliteStore.open(workspace)).close()
    manager = SessionManager([tmp_path], {})
    first, second = await asyncio.gather(manager._store(workspace), manager._store(workspace))
    assert first is second
    await manager.close()
