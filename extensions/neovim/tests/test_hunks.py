"""Hunk review in real Neovim (every build) against the contract double of `keel serve`.

The double's bundle changes greet.py in three places (a change, a deletion, an addition);
its hunks and their ids come from ``keel.bundles.hunks``, as the real server's do. The
tests check the signs of each hunk in the review view, the navigation, the preview float,
what each decision sends (`hunks`, the reason), and that the view follows the rest of the
bundle when it comes back as a new bundle with the same hunk ids.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from keel_nvim_harness import Nvim
from test_client import FAKE, Workspace, answer_inputs

from keel.bundles.hunks import apply_file, file_hunks

BEFORE = (
    "def greet(name):\n    return 'hi ' + name\n\n\ndef part(x):\n    # old comment\n    return x\n"
)
AFTER = (
    "def greet(name: str) -> str:\n"
    "    return 'hi ' + name\n"
    "\n"
    "\n"
    "def part(x):\n"
    "    return x\n"
    "\n"
    "\n"
    "VERSION = 2\n"
)
# The three hunks as the server computes them: @@ -1,1 +1,1 @@ (change),
# @@ -6,1 +5,0 @@ (deletion after proposed line 5), @@ -7,0 +7,3 @@ (addition).
HUNKS = file_hunks("greet.py", BEFORE.encode(), AFTER.encode())
CHANGE, DELETION, ADDITION = HUNKS


def _apply(*chosen: str) -> str:
    out = apply_file("greet.py", BEFORE.encode(), AFTER.encode(), set(chosen))
    assert out is not None
    return out.decode()


@pytest.fixture
def ws(nvim: Nvim, tmp_path: Path) -> Workspace:
    return _workspace(nvim, tmp_path)


def _workspace(nvim: Nvim, tmp_path: Path, env: dict[str, str] | None = None) -> Workspace:
    """greet.py (BEFORE) open, the double attached, its bundle b-1 changing greet.py to AFTER."""
    for key, value in (env or {}).items():
        nvim.lua("vim.env[select(1, ...)] = select(2, ...)", key, value)
    root = tmp_path / "ws"
    (root / ".git").mkdir(parents=True)
    (root / "greet.py").write_text(BEFORE)
    writes = tmp_path / "writes.json"
    writes.write_text(json.dumps({"greet.py": AFTER}))
    log = tmp_path / "fake.jsonl"
    nvim.lua("vim.env.KEEL_FAKE_LOG = ...", str(log))
    nvim.lua("vim.env.KEEL_FAKE_WRITES = ...", str(writes))
    nvim.lua(
        """
        require('keel').setup({ cmd = ..., diagnostics = { debounce_ms = 50 } })
        """,
        [sys.executable, str(FAKE)],
    )
    nvim.cmd(f"edit {root / 'greet.py'}")
    assert nvim.wait(
        "#require('keel.client').all() == 1 and require('keel.client').all()[1].initialized"
    ), nvim.notes()
    ws = Workspace(nvim, root, log)
    nvim.cmd("Keel start Type the greeting")
    assert nvim.wait("#require('keel').pending() == 1"), nvim.notes()
    assert nvim.wait("require('keel.session').diff('b-1') ~= nil")
    return ws


def _open_review(nv: Nvim) -> None:
    nv.cmd("Keel diff")
    assert nv.wait("require('keel.review').view() ~= nil"), nv.notes()


def _view(nv: Nvim) -> dict[str, Any]:
    return dict(
        nv.lua(
            """
            local v = require('keel.review').view()
            if not v then return { open = false } end
            local right = vim.api.nvim_win_get_buf(v.right)
            return {
              open = true,
              bundle = v.bundle.bundleId,
              line = vim.api.nvim_win_get_cursor(v.right)[1],
              current = vim.api.nvim_get_current_win() == v.right,
              signs = require('keel.hunks').placed(right),
              ids = vim.tbl_map(function(h) return h.id end, v.files[v.index].hunks),
            }
            """
        )
    )


def _keys(nv: Nvim, keys: str) -> None:
    nv.lua(
        "vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(..., true, false, true), 'x', false)",
        keys,
    )


def _cursor(nv: Nvim) -> int:
    return int(nv.lua("return vim.api.nvim_win_get_cursor(0)[1]"))


def test_hunk_signs_navigation_and_preview(ws: Workspace) -> None:
    nv = ws.nvim
    _open_review(nv)
    view = _view(nv)
    assert view["current"] and view["ids"] == [h.id for h in HUNKS]
    # One sign per proposed line of each hunk; the deletion on the line it follows.
    assert view["signs"] == [
        {"lnum": 1, "name": "KeelHunkChange"},
        {"lnum": 5, "name": "KeelHunkDelete"},
        {"lnum": 7, "name": "KeelHunkAdd"},
        {"lnum": 8, "name": "KeelHunkAdd"},
        {"lnum": 9, "name": "KeelHunkAdd"},
    ]
    defined = nv.lua("return vim.fn.sign_getdefined('KeelHunkAdd')[1]")
    assert defined["texthl"] == "KeelSignAdd" and defined["text"].strip() == "┃"
    # ]h and [h go from hunk to hunk on the proposed side, wrapping around.
    assert _cursor(nv) == 1
    visited = []
    for _ in range(3):
        _keys(nv, "]h")
        visited.append(_cursor(nv))
    assert visited == [5, 7, 1]
    _keys(nv, "[h")
    assert _cursor(nv) == 7
    _keys(nv, "<Plug>(keel-hunk-prev)")
    assert _cursor(nv) == 5
    _keys(nv, "<Plug>(keel-hunk-next)")
    assert _cursor(nv) == 7
    # gp: the hunk at the cursor in a float, as a diff.
    _keys(nv, "[h")
    _keys(nv, "gp")
    float_ = nv.lua(
        """
        for _, w in ipairs(vim.api.nvim_list_wins()) do
          if vim.api.nvim_win_get_config(w).relative ~= '' then
            local b = vim.api.nvim_win_get_buf(w)
            return { lines = vim.api.nvim_buf_get_lines(b, 0, -1, false), ft = vim.bo[b].filetype }
          end
        end
        """
    )
    assert float_ == {"lines": ["@@ -6,1 +5,0 @@", "-    # old comment"], "ft": "diff"}
    # In the current file's window (left) the hunks are found by their base lines.
    nv.lua(
        "local v = require('keel.review').view(); vim.api.nvim_set_current_win(v.left)"
        " vim.api.nvim_win_set_cursor(v.left, { 1, 0 })"
    )
    _keys(nv, "<Plug>(keel-hunk-next)")
    assert _cursor(nv) == 6  # the deleted line of the base
    # Off a hunk, a decision names the line and sends nothing.
    nv.lua("local v = require('keel.review').view(); vim.api.nvim_set_current_win(v.right)")
    nv.lua("vim.api.nvim_win_set_cursor(0, { 3, 0 })")
    nv.cmd("KeelApproveHunk")
    note = nv.wait_note(r"no hunk at line 3 of greet\.py; \]h goes to the next")
    assert note["level"] == 3
    assert not ws.records("approve")
    # The default keys can be turned off, one by one; the <Plug> mappings stay.
    nv.lua("require('keel').setup({ review = { keymaps = { approve_hunk = false } } })")
    nv.lua("require('keel.review').close()")
    _open_review(nv)
    maps = nv.lua(
        "return { ga = vim.fn.maparg('ga', 'n', false, true).buffer,"
        " gr = vim.fn.maparg('gr', 'n', false, true).buffer }"
    )
    assert maps == {"gr": 1}  # ga is not mapped in the buffer
    assert not nv.errors()


def test_hunk_decisions_send_hunks_and_the_view_follows_the_rest(ws: Workspace) -> None:
    nv = ws.nvim
    _open_review(nv)
    # ga on the first hunk: approve it alone.
    _keys(nv, "ga")
    assert ws.wait_record("approve")["payload"] == {"bundleId": "b-1", "hunks": [CHANGE.id]}
    nv.wait_note(
        r"^Keel: approved hunk greet\.py @@ -1,1 \+1,1 @@ of Greeting \(1 file, V=0\) \[b-1\];"
        r" ledger entry 000000000000; left pending: greet\.py \(2 hunks\)"
        r" \(verified again and proposed as a new bundle\)$"
    )
    # The rest comes back as b-2 with the same ids; the view follows it, at the next hunk.
    assert nv.wait(
        "(require('keel.review').view() or {}).bundle ~= nil"
        " and require('keel.review').view().bundle.bundleId == 'b-2'"
    ), nv.notes()
    view = _view(nv)
    assert view["ids"] == [DELETION.id, ADDITION.id]
    assert view["line"] == 5 and view["current"]
    assert (ws.root / "greet.py").read_text() == _apply(CHANGE.id)
    assert nv.wait(
        "table.concat(vim.api.nvim_buf_get_lines(vim.fn.bufnr(args[1]), 0, -1, false), '\\n')"
        " .. '\\n' == args[2] and not vim.bo[vim.fn.bufnr(args[1])].modified",
        15000,
        str(ws.root / "greet.py"),
        _apply(CHANGE.id),
    )
    # gr asks for the reason; Esc sends nothing, an answer goes with the hunk.
    answer_inputs(nv, [None, "keep the comment"])
    _keys(nv, "gr")
    nv.cmd("Keel ledger")
    ws.wait_record("ledger")
    assert not ws.records("reject")
    assert _view(nv)["bundle"] == "b-2"
    _keys(nv, "gr")
    assert ws.wait_record("reject")["payload"] == {
        "bundleId": "b-2",
        "hunks": [DELETION.id],
        "reason": "keep the comment",
    }
    assert (
        nv.lua("return _G.keel_test.prompts")
        == ["Keel: reason for rejecting hunk greet.py @@ -6,1 +5,0 @@ (optional): "] * 2
    )
    nv.wait_note(
        r"^Keel: rejected hunk greet\.py @@ -6,1 \+5,0 @@ of Greeting \(1 file, V=0\) \[b-2\];"
        r" left pending: greet\.py \(1 hunk\)"
    )
    assert nv.wait("(require('keel.review').view() or { bundle = {} }).bundle.bundleId == 'b-3'")
    view = _view(nv)
    assert view["ids"] == [ADDITION.id]
    assert view["signs"] == [{"lnum": n, "name": "KeelHunkAdd"} for n in (8, 9, 10)]
    assert (ws.root / "greet.py").read_text() == _apply(CHANGE.id)  # a reject writes nothing
    # :Keel approve hunk on the last one: the bundle is decided, nothing follows.
    nv.lua("vim.api.nvim_win_set_cursor(0, { 9, 0 })")
    nv.cmd("Keel approve hunk")
    ws.wait_record("approve", lambda r: r["payload"] == {"bundleId": "b-3", "hunks": [ADDITION.id]})
    nv.wait_note(r"^Keel: approved hunk greet\.py @@ -7,0 \+8,3 @@ of Greeting .*\[b-3\]; ledger")
    assert nv.wait("require('keel.review').view() == nil")
    assert nv.wait("#require('keel').pending() == 0")
    final = _apply(CHANGE.id, ADDITION.id)
    assert (ws.root / "greet.py").read_text() == final
    assert nv.wait(
        "table.concat(vim.api.nvim_buf_get_lines(vim.fn.bufnr(args[1]), 0, -1, false), '\\n')"
        " .. '\\n' == args[2] and not vim.bo[vim.fn.bufnr(args[1])].modified",
        15000,
        str(ws.root / "greet.py"),
        final,
    )
    assert not nv.errors()


def test_a_refused_hunk_decision_changes_nothing(ws: Workspace) -> None:
    nv = ws.nvim
    _open_review(nv)
    # An id the bundle does not have (a stale view): the server's error is shown, nothing
    # is decided, the view stays on b-1 and follows nothing.
    nv.lua("local v = require('keel.review').view(); v.files[1].hunks[1].id = 'deadbeef0000'")
    _keys(nv, "ga")
    ws.wait_record("approve", lambda r: r["payload"]["hunks"] == ["deadbeef0000"])
    note = nv.wait_note(r"no hunk .*deadbeef0000.* in bundle b-1; its hunks: " + CHANGE.id)
    assert note["level"] == 4
    assert _view(nv)["bundle"] == "b-1"
    assert nv.lua("return require('keel.review').following()") is None
    assert (ws.root / "greet.py").read_text() == BEFORE
    # :Keel reject hunk with a reason: no prompt, the reason is sent.
    answer_inputs(nv, [])
    _keys(nv, "]h")
    nv.cmd("Keel reject hunk not this one")
    assert ws.wait_record("reject")["payload"] == {
        "bundleId": "b-1",
        "hunks": [DELETION.id],
        "reason": "not this one",
    }
    assert nv.lua("return _G.keel_test.prompts") == []
    # Outside a review the hunk commands say so.
    nv.wait("(require('keel.review').view() or { bundle = {} }).bundle.bundleId == 'b-2'")
    nv.lua("require('keel.review').close()")
    nv.cmd("Keel approve hunk")
    nv.wait_note(r"not in a Keel review: open one with :Keel diff")
    nv.cmd("Keel approve now")
    nv.wait_note(r"approve takes no argument but `hunk`")
    assert nv.lua("return vim.fn.getcompletion('Keel reject h', 'cmdline')") == ["hunk"]


def test_a_previewed_file_gets_the_approved_hunk_alone(ws: Workspace) -> None:
    nv = ws.nvim
    nv.cmd("Keel preview")
    nv.wait_note(r"previewing Greeting .* in 1 buffer\(s\)")
    assert buffer_lines(nv, ws.root / "greet.py") == (AFTER, True)
    _open_review(nv)
    _keys(nv, "ga")
    assert ws.wait_record("approve")["payload"] == {"bundleId": "b-1", "hunks": [CHANGE.id]}
    assert nv.wait("(require('keel.review').view() or { bundle = {} }).bundle.bundleId == 'b-2'")
    # Not the preview (the whole proposal) but the file: the base with the hunk, saved.
    assert (ws.root / "greet.py").read_text() == _apply(CHANGE.id)
    assert nv.wait("not vim.bo[vim.fn.bufnr(args[1])].modified", 15000, str(ws.root / "greet.py"))
    assert buffer_lines(nv, ws.root / "greet.py") == (_apply(CHANGE.id), False)
    assert nv.lua("return next(require('keel.preview').list()) == nil")
    assert not nv.errors()


def test_a_server_without_hunk_decisions_is_named(nvim: Nvim, tmp_path: Path) -> None:
    ws = _workspace(nvim, tmp_path, {"KEEL_FAKE_NO_HUNK_DECISIONS": "1"})
    nv = ws.nvim
    _open_review(nv)
    _keys(nv, "ga")
    note = nv.wait_note(r"cannot approve single hunks")
    assert note["level"] == 4 and "nothing was approved" in note["msg"]
    answer_inputs(nv, ["no"])
    _keys(nv, "gr")
    note = nv.wait_note(r"cannot reject single hunks")
    assert "nothing was rejected" in note["msg"]
    # Nothing changed: b-1 pending and shown, greet.py as it was, nothing to follow.
    assert _view(nv)["bundle"] == "b-1"
    assert [b["bundleId"] for b in nv.lua("return require('keel').pending()")] == ["b-1"]
    assert nv.lua("return require('keel.review').following()") is None
    assert (ws.root / "greet.py").read_text() == BEFORE
    assert buffer_lines(nv, ws.root / "greet.py") == (BEFORE, False)


def buffer_lines(nv: Nvim, path: Path) -> tuple[str, bool]:
    """A file buffer's text (with the final newline) and whether it is modified."""
    lines, modified = nv.lua(
        "local b = vim.fn.bufnr(...); return { vim.api.nvim_buf_get_lines(b, 0, -1, false),"
        " vim.bo[b].modified }",
        str(path),
    )
    return "\n".join(lines) + "\n", bool(modified)


def test_the_review_hint_fits_one_line(ws: Workspace) -> None:
    """On an 80-column screen the hint is cut to the line: a longer echo would stop at a
    hit-enter prompt."""
    nv = ws.nvim
    nv.lua(
        """
        vim.o.columns = 80
        _G.keel_test.echoes = {}
        local echo = vim.api.nvim_echo
        vim.api.nvim_echo = function(chunks, history, opts)
          table.insert(_G.keel_test.echoes, chunks[1][1])
          return echo(chunks, history, opts)
        end
        """
    )
    _open_review(nv)
    echoes, space = nv.lua("return { _G.keel_test.echoes, vim.v.echospace }")
    (hint,) = [e for e in echoes if e.startswith("Keel Greeting: file 1/1 greet.py (3 hunks) | ]h")]
    assert nv.lua("return vim.fn.strdisplaywidth(...)", hint) <= space
    assert hint.endswith("…")


def test_q_after_a_hunk_decision_stops_following(ws: Workspace) -> None:
    """The rest of the bundle comes after the answer; the user closed the view by then."""
    nv = ws.nvim
    _open_review(nv)
    # The decision goes out (held here: the server does not hear it), the view waits for
    # the rest; q closes it, and the rest, when it comes, does not reopen it.
    nv.lua(
        "_G.keel_test.sent = {}; require('keel.actions').approve = function(opts)"
        " table.insert(_G.keel_test.sent, opts.hunks) end"
    )
    _keys(nv, "ga")
    assert nv.lua("return _G.keel_test.sent") == [[CHANGE.id]]
    assert nv.lua("return require('keel.review').following().from") == "b-1"
    _keys(nv, "q")
    assert nv.lua("return require('keel.review').view()") is None
    assert nv.lua("return require('keel.review').following()") is None
    nv.lua(
        "local files = require('keel.session').diff('b-1')"
        " require('keel.review').bundle_diffed({ bundleId = 'b-9', files = {} }, files)"
    )
    assert nv.lua("return require('keel.review').view()") is None
    # Without q, the same rest is followed.
    _open_review(nv)
    _keys(nv, "ga")
    nv.lua(
        "local files = require('keel.session').diff('b-1')"
        " require('keel.review').bundle_diffed({ bundleId = 'b-9', files = {} }, files)"
    )
    assert nv.lua("return require('keel.review').view().bundle.bundleId") == "b-9"
    assert nv.lua("return require('keel.review').following()") is None
