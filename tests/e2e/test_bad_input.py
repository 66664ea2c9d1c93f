"""Bad input from the editor gets a clear error and loses nothing; the server never dies.

Malformed command arguments, unknown or decided bundles, editor diagnostics for unknown or
malformed URIs, messages over the size limit. (Racing approvals, ``applied: false`` and
disconnects need a session: ``test_decisions.py`` and ``test_disconnect.py``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import Starter
from tests.e2e.editor import Keel, error

INVALID_PARAMS = -32602
REQUEST_FAILED = -32803


async def refused(keel: Keel, command: str, *arguments: Any) -> JsonRpcException:
    with pytest.raises(JsonRpcException) as caught:
        await keel.command(command, *arguments)
    return caught.value


MALFORMED: list[tuple[str, list[Any], int, str]] = [
    ("keel.server.nope", [{}], INVALID_PARAMS, "is not defined"),
    ("keel.server.approve", [], INVALID_PARAMS, "bundleId: Field required"),
    ("keel.server.approve", [["b1"]], INVALID_PARAMS, "takes one JSON object"),
    ("keel.server.approve", [{"bundleId": "b1"}, {}], INVALID_PARAMS, "got 2 arguments"),
    ("keel.server.approve", [{"bundle_id": "b1"}], INVALID_PARAMS, "bundle_id: Extra inputs"),
    ("keel.server.approve", [{"bundleId": 5}], INVALID_PARAMS, "valid string"),
    ("keel.server.approve", [{"bundleId": "b1", "files": []}], INVALID_PARAMS, "files"),
    ("keel.server.approve", [{"bundleId": "b1"}], INVALID_PARAMS, "no pending bundle b1"),
    ("keel.server.reject", [{"bundleId": "b1"}], INVALID_PARAMS, "no pending bundle b1"),
    ("keel.server.correct", [{"bundleId": "b1"}], INVALID_PARAMS, "feedback: Field required"),
    ("keel.server.diff", [{"bundleId": "b1"}], INVALID_PARAMS, "no pending bundle b1"),
    ("keel.server.startSession", [{"task": ""}], INVALID_PARAMS, "task"),
    ("keel.server.startSession", [{"task": "x", "mode": "fast"}], INVALID_PARAMS, "mode"),
    ("keel.server.startSession", [{"task": "x" * 30_000}], INVALID_PARAMS, "task"),
    ("keel.server.status", ["now"], INVALID_PARAMS, "takes one JSON object"),
    ("keel.server.ledger", [{"limit": -1}], INVALID_PARAMS, "limit"),
    ("keel.server.rollback", [{"entry": "HEAD~1; rm -rf /"}], INVALID_PARAMS, "entry"),
    ("keel.server.rollback", [{"entry": "abcdef12"}], REQUEST_FAILED, "not a Keel ledger"),
    ("keel.server.resume", [{"sessionId": "s-nope"}], REQUEST_FAILED, "no session s-nope"),
]


async def test_malformed_commands_get_clear_errors(start_keel: Starter) -> None:
    keel = await start_keel()
    for command, arguments, code, says in MALFORMED:
        failure = await refused(keel, command, *arguments)
        assert failure.code == code and says in str(failure), (command, arguments, str(failure))
    status = await keel.command("keel.server.status")  # still serving
    assert status["pendingBundles"] == [] and status["sessionId"] is None
    assert await keel.command("keel.server.status", {}) == status


async def test_editor_diagnostics_for_unknown_or_malformed_uris_are_ignored(
    start_keel: Starter, workspace: Path, tmp_path: Path
) -> None:
    keel = await start_keel()
    version = keel.open("README.md", "# demo\n")
    outside = (tmp_path / "elsewhere.py").as_uri()
    bad: list[Any] = [
        {"uri": outside, "diagnostics": [error(0, "outside")]},
        {"uri": "untitled:Untitled-1", "diagnostics": [error(0, "untitled")]},
        {"uri": "file:///%00/x.py", "diagnostics": []},
        {"uri": keel.uri(".git/config"), "diagnostics": [error(0, "git")]},
        {"uri": keel.uri("README.md"), "version": version + 7, "diagnostics": [error(0, "stale")]},
        {"uri": keel.uri("README.md"), "diagnostics": "not a list"},
        {"diagnostics": []},
        "not an object",
        None,
        {"uri": keel.uri("README.md"), "diagnostics": [{"message": "no range"}, 42]},
    ]
    for params in bad:
        keel.client.protocol.notify("keel/editorDiagnostics", params)
    status = await keel.command("keel.server.status")
    assert status["pendingBundles"] == []
    messages = [m.message for m in keel.client.log_messages]
    assert any("ignored a malformed keel/editorDiagnostics" in m for m in messages), messages
    assert any("skipped 2 unusable diagnostics" in m for m in messages), messages
    # Nothing above became evidence: a fix is offered only for what the request carries.
    assert await keel.code_actions("README.md") == []


async def test_messages_over_the_size_limit_are_skipped_and_answered(
    start_keel: Starter, workspace: Path
) -> None:
    keel = await start_keel(env={"KEEL_LSP_MAX_MESSAGE_BYTES": "100000"})
    failure = await refused(keel, "keel.server.startSession", {"task": "x" * 200_000})
    assert failure.code == INVALID_PARAMS and "over the limit of 100000 bytes" in str(failure)
    keel.forward("README.md", [error(0, "e" * 200_000)], None)
    status = await keel.command("keel.server.status")  # the stream is still in sync
    assert status["sessionId"] is None
    assert any("over the limit" in m.message for m in keel.client.messages)
    keel.open("big.py", "x = 1\n" * 10_000)  # 60 kB: under the limit, handled as usual
    assert await keel.code_actions("big.py") == []
