"""A stand-in for `keel serve`: docs/reference/lsp.md on the wire, with no engine behind it.

It lets the plugin's client side (commands, notifications, progress, applyEdit, forwarded
diagnostics, hover) be tested in real Neovim without the real language server. It is a
test double of the *protocol*, not of Keel: the end-to-end tests against `keel serve`
live in test_e2e.py. Every payload it sends is built from ``keel.lsp.payloads``, the models
the real server uses, so the double cannot drift from the schema.

Behaviour:
- ``keel.server.startSession`` answers ``{"sessionId": "s-fake"}``, then reports
  ``$/progress`` (begin, report, end) and proposes bundle ``b-1`` (node ``node-1``,
  "Greeting") changing ``greet.py`` and ``util.py`` of the workspace root, with
  ``keel/bundleProposed`` and ``keel/sessionChanged``.
- ``status``, ``diff``, ``approve`` (writes the files, then ``workspace/applyEdit``),
  ``reject``, ``correct``, ``abort``, ``resume``, ``ledger`` and ``rollback`` behave as
  docs/reference/lsp.md says. ``approve`` or ``reject`` with ``files`` (some of the
  bundle's) decides the bundle for those files and proposes the rest as a new bundle
  ``b-2``, ``b-3``... (``keel/bundleProposed``), as the real server does. With
  ``KEEL_FAKE_NO_FILE_REJECT=1`` ``reject`` refuses ``files`` as a server from before
  per-file reject does (``InvalidParams``, pydantic's "Extra inputs are not permitted").
- ``approve`` or ``reject`` with ``hunks`` (ids of ``diff``, computed by
  ``keel.bundles.hunks`` as the real server does) decides those hunks: approve writes the
  base with them applied; both propose the hunks left as a new bundle (same ids). An unknown
  id is ``InvalidParams`` naming the known ones. ``KEEL_FAKE_WRITES`` names a JSON file
  ``{"relative path": "proposed text"}`` replacing the session bundle's files. With
  ``KEEL_FAKE_NO_HUNK_DECISIONS=1`` approve and reject refuse ``hunks`` as pydantic does
  for a key it does not know.
- ``keel/editorDiagnostics`` is recorded; the hover of a bundle file reports V_syn as the
  number of forwarded error diagnostics of that file.
- Every command and client notification is appended to the JSON Lines file named by
  ``KEEL_FAKE_LOG``.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

from lsprotocol import types as T
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from keel.bundles.hunks import bundle_hunks, file_hunks, split, unknown_ids
from keel.lsp import payloads as P
from keel.lsp.review import diff_hunk

GREET_AFTER = 'def greet(name: str) -> str:\n    return f"héllo {name}"\n'
UTIL_AFTER = "def double(x: int) -> int:\n    return 2 * x\n"

server = LanguageServer("keel", "0.0.0-fake")
state: dict[str, Any] = {
    "bundles": {},
    "ledger": [],
    "diagnostics": {},
    "session": None,
    "next_bundle": 2,
}


def _plain(value: Any) -> Any:
    """pygls Object (nested namedtuples) -> plain JSON-like values."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _record(kind: str, name: str, payload: Any) -> None:
    path = os.environ.get("KEEL_FAKE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"kind": kind, "name": name, "payload": _plain(payload)}) + "\n")


def _root() -> Path:
    root = server.workspace.root_path
    assert root, "the client sent no root"
    return Path(root)


ZERO = P.Energy(v=0, v_syn=0, v_str=0, v_log=0, v_boot=0, v_sheaf=0, epsilon=0.1, stable=True)


def _proposed(bundle: dict[str, Any]) -> P.BundleProposed:
    return P.BundleProposed(
        bundle_id=bundle["bundleId"],
        node_id=bundle["nodeId"],
        title=bundle["title"],
        files=list(bundle["after"]),
        energy=ZERO,
        session_id=state["session"] or "s-fake",
    )


def _summary() -> Any:
    pending = [_proposed(b) for b in state["bundles"].values()]
    node = P.SummaryNode(
        id="node-1",
        title="Greeting",
        kind="code",
        state="awaiting_approval" if pending else "committed",
        owns=["greet.py", "util.py"],
        depends_on=[],
        attempts=1,
        energy=ZERO,
        ledger_entry=None if pending or not state["ledger"] else state["ledger"][0].sha,
    )
    return P.SessionSummary(
        session_id=state["session"],
        task="Greeting" if state["session"] else None,
        running=bool(pending),
        outcome=None if pending or not state["session"] else "success",
        reason="",
        mode="cautious" if state["session"] else None,
        epsilon=0.1 if state["session"] else None,
        nodes=[node] if state["session"] else [],
        pending_bundles=pending,
        sessions=[],
    ).wire()


def _changed() -> None:
    server.protocol.notify("keel/sessionChanged", _summary())


def _v_syn(uri: str) -> int:
    diags = state["diagnostics"].get(to_fs_path(uri), [])
    return sum(1 for d in diags if d.get("severity") == 1)


async def _run_session() -> None:
    token = str(uuid.uuid4())
    await server.work_done_progress.create_async(token)
    server.work_done_progress.begin(token, T.WorkDoneProgressBegin(title="Keel: planning"))
    server.work_done_progress.report(token, T.WorkDoneProgressReport(message="node-1"))
    root = _root()
    writes = {"greet.py": GREET_AFTER, "util.py": UTIL_AFTER}
    if os.environ.get("KEEL_FAKE_WRITES"):
        writes = json.loads(Path(os.environ["KEEL_FAKE_WRITES"]).read_text())  # noqa: ASYNC240
    uris = {rel: from_fs_path(str(root / rel)) for rel in writes}
    bundle = {
        "bundleId": "b-1",
        "nodeId": "node-1",
        "title": "Greeting",
        "after": {uris[rel]: text for rel, text in writes.items()},
        "before": {
            uris[rel]: (root / rel).read_text() if (root / rel).exists() else "" for rel in writes
        },
    }
    server.work_done_progress.end(token, T.WorkDoneProgressEnd(message="bundle ready"))
    _propose(bundle)


def _propose(bundle: dict[str, Any]) -> None:
    state["bundles"][bundle["bundleId"]] = bundle
    server.protocol.notify("keel/bundleProposed", _proposed(bundle).wire())
    _changed()


def _split(bundle_id: str, uris: list[str]) -> dict[str, Any]:
    """Take ``uris`` out of a pending bundle (it is decided); propose the rest anew."""
    bundle = state["bundles"].pop(bundle_id)
    unknown = [u for u in uris if u not in bundle["after"]]
    if unknown:
        state["bundles"][bundle_id] = bundle
        raise JsonRpcInvalidParams(f"{unknown[0]} is not a file of bundle {bundle_id}")
    taken = {u: bundle["after"].pop(u) for u in uris}
    if bundle["after"]:
        rest = {
            **bundle,
            "bundleId": f"b-{state['next_bundle']}",
            "before": {u: bundle["before"][u] for u in bundle["after"]},
        }
        state["next_bundle"] += 1
        _propose(rest)
    else:
        _changed()
    return taken


def _by_path(bundle: dict[str, Any]) -> tuple[dict[str, bytes | None], dict[str, bytes | None]]:
    """A bundle's proposal and base keyed by path ('' before a created file: None)."""
    changes = {_path(u): text.encode() for u, text in bundle["after"].items()}
    base = {_path(u): bundle["before"][u].encode() or None for u in bundle["after"]}
    return changes, base


def _path(uri: str) -> str:
    return Path(to_fs_path(uri)).relative_to(_root()).as_posix()


def _text(data: bytes | None) -> str:
    return (data or b"").decode()


def _refuse_hunks(command: str, args: dict[str, Any]) -> None:
    if "hunks" in args and os.environ.get("KEEL_FAKE_NO_HUNK_DECISIONS"):
        raise JsonRpcInvalidParams(
            f"keel.server.{command}: invalid argument: hunks: Extra inputs are not permitted"
        )


def _split_hunks(bundle_id: str, ids: list[str], keep: bool) -> dict[str, str]:
    """Decide hunks ``ids`` of a pending bundle: ``keep`` (approve) gives the base with them
    applied, by URI, and proposes the rest on top; else (reject) they are dropped and the
    others proposed on the base. Unknown ids change nothing (InvalidParams)."""
    bundle = state["bundles"][bundle_id]
    changes, base = _by_path(bundle)
    hunks = bundle_hunks(changes, base)
    unknown = unknown_ids(hunks, ids)
    if unknown or not ids:
        known = ", ".join(h.id for h in hunks)
        raise JsonRpcInvalidParams(
            f"no hunk {unknown[:1]} in bundle {bundle_id}; its hunks: {known}"
        )
    uri_of = {_path(u): u for u in bundle["after"]}
    if keep:
        cut = split(changes, base, set(ids))
        written = {uri_of[p]: _text(v) for p, v in cut.chosen.items()}
        rest, rest_base = cut.rest, cut.rest_base
    else:
        cut = split(changes, base, {h.id for h in hunks if h.id not in ids})
        written = {}
        rest, rest_base = cut.chosen, cut.chosen_base
    state["bundles"].pop(bundle_id)
    if rest:
        _propose(
            {
                **bundle,
                "bundleId": f"b-{state['next_bundle']}",
                "after": {uri_of[p]: _text(v) for p, v in rest.items()},
                "before": {uri_of[p]: _text(rest_base[p]) for p in rest},
            }
        )
        state["next_bundle"] += 1
    else:
        _changed()
    return written


@server.feature(T.INITIALIZED)
def initialized(params: T.InitializedParams) -> None:
    edit = server.client_capabilities.workspace.workspace_edit
    _record(
        "notification",
        "initialized",
        {"changeAnnotationSupport": repr(edit.change_annotation_support) if edit else None},
    )


@server.command("keel.server.startSession")
async def start_session(args: dict[str, Any]) -> dict[str, Any]:
    _record("command", "startSession", args)
    state["session"] = "s-fake"
    asyncio.get_running_loop().create_task(_run_session())
    return P.SessionIdResult(session_id="s-fake").wire()


@server.command("keel.server.status")
def status(args: dict[str, Any]) -> dict[str, Any]:
    _record("command", "status", args)
    return _summary()


@server.command("keel.server.diff")
def diff(args: dict[str, Any]) -> dict[str, Any]:
    _record("command", "diff", args)
    bundle = state["bundles"][args["bundleId"]]
    files = [
        P.DiffFile(
            uri=uri,
            path=_path(uri),
            change="modify" if bundle["before"][uri] else "create",
            before=bundle["before"][uri],
            after=after,
            unified_diff="",
            hunks=[
                diff_hunk(h)
                for h in file_hunks(
                    _path(uri), bundle["before"][uri].encode() or None, after.encode()
                )
            ],
        )
        for uri, after in bundle["after"].items()
    ]
    return P.DiffResult(bundle_id=args["bundleId"], files=files).wire()


@server.command("keel.server.approve")
async def approve(args: dict[str, Any]) -> dict[str, Any]:
    _record("command", "approve", args)
    _refuse_hunks("approve", args)
    bundle = state["bundles"][args["bundleId"]]
    chosen = args.get("files") or list(bundle["after"])
    if any(uri not in bundle["after"] for uri in chosen):
        raise JsonRpcInvalidParams(f"a file of {chosen} is not in bundle {args['bundleId']}")
    written = {uri: bundle["after"][uri] for uri in chosen}
    if args.get("hunks"):
        written = _split_hunks(args["bundleId"], args["hunks"], keep=True)
        chosen = list(written)
    changes = []
    for uri, after in written.items():
        path = Path(to_fs_path(uri))
        path.write_text(after)  # noqa: ASYNC240 (a test double; the write is tiny)
        lines = bundle["before"][uri].count("\n") + 1
        changes.append(
            T.TextDocumentEdit(
                text_document=T.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None),
                edits=[
                    T.TextEdit(
                        range=T.Range(T.Position(0, 0), T.Position(lines, 0)), new_text=after
                    )
                ],
            )
        )
    result = await server.workspace_apply_edit_async(
        T.ApplyWorkspaceEditParams(edit=T.WorkspaceEdit(document_changes=changes), label="Greeting")
    )
    _record("applied", "approve", {"applied": result.applied})
    if not args.get("hunks"):
        _split(args["bundleId"], chosen)
    sha = f"{len(state['ledger']) + 1:040x}"
    entry = P.LedgerEntry(
        sha=sha,
        title="Greeting",
        session_id="s-fake",
        node_id="node-1",
        bundle=args["bundleId"],
        energy="V=0.000",
        approved_by="user",
        timestamp="2026-12-04T00:00:00+00:00",
        files=[Path(to_fs_path(uri)).name for uri in chosen],
        reverts=None,
    )
    state["ledger"].insert(0, entry)
    _changed()
    return P.LedgerEntryResult(ledger_entry=sha).wire()


@server.command("keel.server.reject")
def reject(args: dict[str, Any]) -> dict[str, Any]:
    _record("command", "reject", args)
    _refuse_hunks("reject", args)
    if "files" in args and os.environ.get("KEEL_FAKE_NO_FILE_REJECT"):
        raise JsonRpcInvalidParams(
            "keel.server.reject: invalid argument: files: Extra inputs are not permitted"
        )
    decided = P.DecisionResult(bundle_id=args["bundleId"], decision="rejected").wire()
    if args.get("hunks"):
        _split_hunks(args["bundleId"], args["hunks"], keep=False)
        return decided
    if args.get("files"):
        _split(args["bundleId"], args["files"])
        return decided
    state["bundles"].pop(args["bundleId"], None)
    _changed()
    return decided


@server.command("keel.server.correct")
def correct(args: dict[str, Any]) -> dict[str, Any]:
    _record("command", "correct", args)
    state["bundles"].pop(args["bundleId"], None)
    _changed()
    return P.DecisionResult(bundle_id=args["bundleId"], decision="correcting").wire()


@server.command("keel.server.abort")
def abort(args: dict[str, Any]) -> dict[str, Any]:
    _record("command", "abort", args)
    return P.AbortResult(aborted=[]).wire()


@server.command("keel.server.resume")
def resume(args: dict[str, Any]) -> dict[str, Any]:
    _record("command", "resume", args)
    return P.SessionIdResult(session_id=args.get("sessionId") or "s-fake").wire()


@server.command("keel.server.ledger")
def ledger(args: dict[str, Any]) -> Any:
    _record("command", "ledger", args)
    return P.LedgerResult(state["ledger"][: args.get("limit") or 20]).wire()


@server.command("keel.server.rollback")
def rollback(args: dict[str, Any]) -> dict[str, Any]:
    _record("command", "rollback", args)
    return P.LedgerEntryResult(ledger_entry="f" * 40).wire()


@server.feature("keel/editorDiagnostics")
def editor_diagnostics(params: Any) -> None:
    plain = _plain(params)
    _record("notification", "keel/editorDiagnostics", plain)
    state["diagnostics"][to_fs_path(plain["uri"])] = plain["diagnostics"]


@server.feature(T.TEXT_DOCUMENT_HOVER)
def hover(params: T.HoverParams) -> T.Hover | None:
    uri = params.text_document.uri
    owned = any(uri in b["after"] or uri in b["before"] for b in state["bundles"].values())
    if not owned and not state["diagnostics"].get(to_fs_path(uri)):
        return None
    encoding = server.workspace.position_encoding or "utf-16"
    encoding = getattr(encoding, "value", encoding)
    text = f"**Keel energy**\n\nV_syn = {_v_syn(uri)}\n\nencoding = {encoding}"
    return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=text))


if __name__ == "__main__":
    server.start_io()
