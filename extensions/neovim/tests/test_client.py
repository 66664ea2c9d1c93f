"""The plugin's client side in real Neovim against a contract double of `keel serve`.

tests/fake_keel_server.py speaks docs/reference/lsp.md (commands, notifications, progress,
applyEdit, hover) with no engine behind it, so these tests check what the plugin sends and
how it reacts, on every Neovim build, without waiting for the real server.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from keel_nvim_harness import Nvim

FAKE = Path(__file__).with_name("fake_keel_server.py")
GREET_BEFORE = "def greet(name):\n    return 'hi ' + name\n"
GREET_AFTER = 'def greet(name: str) -> str:\n    return f"héllo {name}"\n'
UTIL_AFTER = "def double(x: int) -> int:\n    return 2 * x\n"


@dataclass
class Workspace:
    nvim: Nvim
    root: Path
    log: Path

    def records(self, name: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        out = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [r for r in out if name is None or r["name"] == name]

    def wait_record(
        self, name: str, pred: Callable[[dict[str, Any]], bool] = lambda r: True
    ) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for record in self.records(name):
                if pred(record):
                    return record
            self.nvim.lua("vim.wait(50)")
        raise AssertionError(f"no {name} record matching; got {self.records()}")

    def uri(self, rel: str) -> str:
        return str(self.nvim.lua("return vim.uri_from_fname(...)", str(self.root / rel)))


def open_workspace(nvim: Nvim, tmp_path: Path, env: dict[str, str] | None = None) -> Workspace:
    """A workspace with greet.py open and the fake server attached (``env`` for the fake)."""
    root = tmp_path / "ws"
    (root / ".git").mkdir(parents=True)
    (root / "greet.py").write_text(GREET_BEFORE)
    (root / "other.py").write_text("X = 1\n")
    log = tmp_path / "fake.jsonl"
    nvim.lua("vim.env.KEEL_FAKE_LOG = ...", str(log))
    for key, value in (env or {}).items():
        nvim.lua("vim.env[select(1, ...)] = select(2, ...)", key, value)
    nvim.lua(
        """
        local cmd = ...
        require('keel').setup({ cmd = cmd, diagnostics = { debounce_ms = 50 },
          notify = { progress_throttle_ms = 0 } })
        _G.keel_test.events = {}
        for _, name in ipairs({ 'KeelSessionChanged', 'KeelBundleProposed', 'KeelProgress' }) do
          vim.api.nvim_create_autocmd('User', { pattern = name, callback = function()
            table.insert(_G.keel_test.events, name) end })
        end
        require('keel.compat').on_lsp_progress(function()
          table.insert(_G.keel_test.events, 'nvim-progress') end)
        """,
        [sys.executable, str(FAKE)],
    )
    nvim.cmd(f"edit {root / 'greet.py'}")
    assert nvim.wait(
        "#require('keel.client').all() == 1 and require('keel.client').all()[1].initialized"
    ), nvim.notes()
    return Workspace(nvim, root, log)


@pytest.fixture
def ws(nvim: Nvim, tmp_path: Path) -> Workspace:
    return open_workspace(nvim, tmp_path)


def start_session(ws: Workspace) -> None:
    ws.nvim.cmd("Keel start Add type hints to greet")
    ws.wait_record("startSession", lambda r: r["payload"] == {"task": "Add type hints to greet"})
    assert ws.nvim.wait("#require('keel').pending() == 1"), ws.nvim.notes()
    assert ws.nvim.wait("require('keel.session').diff('b-1') ~= nil")


def test_attaches_and_starts_a_session(ws: Workspace) -> None:
    nv = ws.nvim
    attached = nv.lua("return vim.lsp.buf_is_attached(0, require('keel.client').all()[1].id)")
    assert attached
    assert nv.lua("return require('keel.client').root_of(require('keel.client').all()[1])") == str(
        ws.root
    )
    # No change annotations: approval is the approve command, not a second prompt.
    assert ws.wait_record("initialized")["payload"] == {"changeAnnotationSupport": "None"}
    start_session(ws)
    nv.wait_note(r"session s-fake started: Add type hints to greet")
    nv.wait_note(r"^Keel: planning$")  # progress begin ("Keel: " is not doubled)
    nv.wait_note(r"^Keel: planning: bundle ready$")  # progress end
    nv.wait_note(r"bundle proposed: Greeting \(2 files, V=0\) \[b-1\]")
    assert nv.wait("require('keel.session').summary() ~= nil")
    assert not [n for n in nv.notes() if n["msg"].startswith("Keel: session s-fake running")]
    assert nv.wait("vim.tbl_contains(_G.keel_test.events, 'KeelBundleProposed')")
    events = nv.lua("return _G.keel_test.events")
    assert {"KeelSessionChanged", "KeelBundleProposed", "KeelProgress"} <= set(events)
    # Neovim's own progress event (LspProgress / User LspProgressUpdate) still fires.
    assert "nvim-progress" in events
    # The lines the bundle changes are marked in the sign column of the open file.
    assert nv.wait("#require('keel.signs').list(0) > 0")
    marks = nv.lua("return require('keel.signs').list(0)")
    assert [m["line"] for m in marks] == [0, 1]
    assert {m["text"] for m in marks} == {"┃"}
    assert nv.lua("return require('keel').statusline()") == "Keel: 1 pending"
    assert not nv.errors()


def test_forwards_diagnostics_and_hover_shows_v_syn(ws: Workspace) -> None:
    nv = ws.nvim
    start_session(ws)
    uri = ws.uri("greet.py")
    # The new bundle's files get a baseline at once: no diagnostics yet.
    ws.wait_record("keel/editorDiagnostics", lambda r: r["payload"]["uri"] == uri)
    hover = nv.lua(
        """
        local out = {}
        require('keel').hover({ quiet = true, callback = function(err, text) out.text = text end })
        vim.wait(5000, function() return out.text ~= nil end, 20)
        return out.text
        """
    )
    assert "V_syn = 0" in hover
    nv.lua(
        """
        local ns = vim.api.nvim_create_namespace('keel_test_checker')
        vim.diagnostic.set(ns, 0, {
          { lnum = 1, col = 4, end_lnum = 1, end_col = 10, severity = vim.diagnostic.severity.ERROR,
            message = 'bad return', source = 'testchecker', code = 'E1' },
        })
        """
    )
    record = ws.wait_record(
        "keel/editorDiagnostics",
        lambda r: r["payload"]["uri"] == uri and len(r["payload"]["diagnostics"]) == 1,
    )
    payload = record["payload"]
    assert isinstance(payload["version"], int)
    assert payload["diagnostics"] == [
        {
            "range": {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 10}},
            "severity": 1,
            "message": "bad return",
            "source": "testchecker",
            "code": "E1",
        }
    ]
    hover = nv.lua(
        """
        local out = {}
        require('keel').hover({ quiet = true, callback = function(err, text) out.text = text end })
        vim.wait(5000, function() return out.text ~= nil end, 20)
        return out.text
        """
    )
    assert "V_syn = 1" in hover
    # The client's negotiated encoding is what positions were converted to.
    encoding = nv.lua("return require('keel.client').all()[1].offset_encoding")
    assert f"encoding = {encoding}" in hover
    # Files outside the session are not forwarded.
    nv.cmd(f"edit {ws.root / 'other.py'}")
    nv.lua(
        "vim.diagnostic.set(vim.api.nvim_create_namespace('keel_test_checker'), 0,"
        " {{ lnum = 0, col = 0, severity = 1, message = 'elsewhere' }})"
    )
    nv.lua("vim.wait(300)")
    other = ws.uri("other.py")
    assert not ws.records("keel/editorDiagnostics") or all(
        r["payload"]["uri"] != other for r in ws.records("keel/editorDiagnostics")
    )


def test_approve_from_the_file_writes_and_syncs_buffers(ws: Workspace) -> None:
    nv = ws.nvim
    start_session(ws)
    nv.cmd("Keel approve")
    record = ws.wait_record("approve")
    assert record["payload"] == {"bundleId": "b-1"}
    nv.wait_note(r"approved Greeting .*ledger entry 000000000000")
    nv.wait_note(r"^Keel: session s-fake success: 1 committed$")  # the outcome is news
    assert nv.wait("not vim.bo.modified and vim.api.nvim_buf_get_lines(0, 0, -1, false)[2] ~= nil")
    lines = nv.lua("return vim.api.nvim_buf_get_lines(0, 0, -1, false)")
    assert "\n".join(lines) + "\n" == GREET_AFTER
    assert (ws.root / "greet.py").read_text() == GREET_AFTER
    assert (ws.root / "util.py").read_text() == UTIL_AFTER
    # Buffers the edit loaded are not left modified either.
    assert nv.lua(
        "local b = vim.fn.bufnr(...); return b == -1 or not vim.bo[b].modified",
        str(ws.root / "util.py"),
    )
    assert nv.wait("#require('keel').pending() == 0")
    assert nv.lua("return require('keel.signs').list(0)") == []
    nv.cmd("Keel ledger")
    nv.wait_note(r"ledger:\n  000000000000  2026-12-04T00:00:00\+00:00  Greeting  \[V=0.000\]")
    completion = nv.lua("return vim.fn.getcompletion('Keel rollback ', 'cmdline')")
    assert completion == ["0" * 39 + "1"]
    nv.cmd("Keel rollback 0000000000000000000000000000000000000001")
    ws.wait_record("rollback", lambda r: r["payload"] == {"entry": "0" * 39 + "1"})
    nv.wait_note(r"rolled back .*revert ffffffffffff")
    assert not nv.errors()


def test_reject_leaves_buffer_and_file_unchanged(ws: Workspace) -> None:
    nv = ws.nvim
    start_session(ws)
    nv.cmd("Keel reject not what I asked for")
    record = ws.wait_record("reject")
    assert record["payload"] == {"bundleId": "b-1", "reason": "not what I asked for"}
    nv.wait_note(r"rejected Greeting")
    assert (ws.root / "greet.py").read_text() == GREET_BEFORE
    assert not (ws.root / "util.py").exists()
    lines = nv.lua("return vim.api.nvim_buf_get_lines(0, 0, -1, false)")
    assert "\n".join(lines) + "\n" == GREET_BEFORE
    assert not nv.lua("return vim.bo.modified")
    assert nv.lua("return require('keel.signs').list(0)") == []
    assert not nv.errors()


def test_correct_abort_resume_send_their_arguments(ws: Workspace) -> None:
    nv = ws.nvim
    start_session(ws)
    nv.cmd("Keel correct use an f-string")
    assert ws.wait_record("correct")["payload"] == {
        "bundleId": "b-1",
        "feedback": "use an f-string",
    }
    nv.cmd("Keel abort")
    assert ws.wait_record("abort")["payload"] == {}
    nv.cmd("Keel resume s-fake")
    assert ws.wait_record("resume")["payload"] == {"sessionId": "s-fake"}
    nv.cmd("Keel resume")
    ws.wait_record("resume", lambda r: r["payload"] == {})
    nv.cmd("Keel status")
    nv.wait_note(r"session s-fake success: 1 committed\n  task: Greeting\n  node-1 ")
    assert not nv.errors()


def test_one_pending_bundle_is_acted_on_without_asking(ws: Workspace) -> None:
    """Outside the bundle's files, with one pending bundle, nothing asks "which bundle?"."""
    nv = ws.nvim
    start_session(ws)
    nv.lua(
        """
        _G.keel_test.selects = {}
        vim.ui.select = function(items, opts, on_choice)
          table.insert(_G.keel_test.selects, opts.prompt)
          on_choice(items[1], 1)
        end
        """
    )
    nv.cmd(f"edit {ws.root / 'other.py'}")
    nv.cmd("Keel diff")
    assert nv.wait("require('keel.review').view() ~= nil"), nv.notes()
    nv.lua("require('keel.review').close()")
    nv.cmd(f"edit {ws.root / 'other.py'}")
    nv.cmd("Keel approve")
    assert ws.wait_record("approve")["payload"]["bundleId"] == "b-1"
    assert nv.lua("return _G.keel_test.selects") == []


def answer_inputs(nv: Nvim, answers: list[str | None]) -> None:
    """Replace vim.ui.input: record each prompt, answer from ``answers`` (None: Esc)."""
    nv.lua(
        """
        _G.keel_test.prompts = {}
        local answers = ...
        vim.ui.input = function(opts, on_confirm)
          table.insert(_G.keel_test.prompts, opts.prompt)
          local answer = table.remove(answers, 1)
          on_confirm(answer ~= vim.NIL and answer or nil)
        end
        """,
        answers,
    )


def buffer_of(ws: Workspace, rel: str) -> dict[str, Any]:
    return dict(
        ws.nvim.lua(
            "local b = vim.fn.bufnr(...); return { lines = vim.api.nvim_buf_get_lines(b, 0, -1,"
            " false), modified = vim.bo[b].modified, marks = #require('keel.signs').list(b) }",
            str(ws.root / rel),
        )
    )


def test_review_view_r_rejects_the_file_shown(ws: Workspace) -> None:
    nv = ws.nvim
    start_session(ws)
    nv.cmd("Keel diff")
    assert nv.wait("require('keel.review').view() ~= nil")
    view = nv.lua(
        """
        local v = require('keel.review').view()
        local right = vim.api.nvim_win_get_buf(v.right)
        return {
          tabs = #vim.api.nvim_list_tabpages(),
          left_diff = vim.wo[v.left].diff, right_diff = vim.wo[v.right].diff,
          left = vim.api.nvim_buf_get_name(vim.api.nvim_win_get_buf(v.left)),
          right = vim.api.nvim_buf_get_name(right),
          lines = vim.api.nvim_buf_get_lines(right, 0, -1, false),
          current = vim.api.nvim_get_current_win() == v.right,
          modifiable = vim.bo[right].modifiable,
          filetype = vim.bo[right].filetype,
        }
        """
    )
    assert view["tabs"] == 2
    assert view["left_diff"] and view["right_diff"] and view["current"]
    assert view["left"] == str(ws.root / "greet.py")
    assert view["right"].startswith("keel://b-1/") and view["right"].endswith("greet.py")
    assert view["lines"] == GREET_AFTER.splitlines()
    assert not view["modifiable"]
    assert view["filetype"] == "python"
    answer_inputs(nv, [None, "greet is fine as it is"])
    # r, then Esc at the reason prompt: nothing is sent (the ledger request that follows
    # is the next thing the server hears) and the view stays.
    nv.lua("vim.api.nvim_feedkeys('r', 'x', false)")
    nv.cmd("Keel ledger")
    ws.wait_record("ledger")
    assert not ws.records("reject")
    assert nv.lua("return _G.keel_test.prompts") == [
        "Keel: reason for rejecting greet.py (optional): "
    ]
    assert nv.lua("return require('keel.review').view().index") == 1
    # r with a reason: greet.py's change is rejected, the rest comes back as a new bundle.
    nv.lua("vim.api.nvim_feedkeys('r', 'x', false)")
    record = ws.wait_record("reject")
    assert record["payload"] == {
        "bundleId": "b-1",
        "files": [ws.uri("greet.py")],
        "reason": "greet is fine as it is",
    }
    nv.wait_note(
        r"^Keel: rejected greet\.py of Greeting \(2 files, V=0\) \[b-1\]; left pending: util\.py"
        r" \(verified again and proposed as a new bundle\)$"
    )
    assert nv.wait("require('keel.review').view() == nil")
    assert nv.lua("return #vim.api.nvim_list_tabpages()") == 1
    nv.wait_note(r"bundle proposed: Greeting \(1 file, V=0\) \[b-2\]")
    assert nv.wait(
        "#require('keel').pending() == 1 and require('keel').pending()[1].bundleId == 'b-2'"
    )
    assert nv.lua("return require('keel').pending()[1].files") == [ws.uri("util.py")]
    assert (ws.root / "greet.py").read_text() == GREET_BEFORE
    assert not (ws.root / "util.py").exists()
    assert buffer_of(ws, "greet.py") == {
        "lines": GREET_BEFORE.splitlines(),
        "modified": False,
        "marks": 0,  # greet.py is in no pending bundle now
    }
    # The new bundle: its one file, approved with A.
    nv.cmd(f"edit {ws.root / 'util.py'}")
    nv.cmd("Keel diff")
    assert nv.wait("require('keel.review').view() ~= nil")
    assert nv.lua("return #require('keel.review').view().files") == 1
    nv.lua("vim.api.nvim_feedkeys('A', 'x', false)")
    assert ws.wait_record("approve")["payload"] == {"bundleId": "b-2"}
    nv.wait_note(r"^Keel: approved Greeting \(1 file, V=0\) \[b-2\]; ledger entry 000000000000$")
    assert nv.wait("require('keel.review').view() == nil")
    assert (ws.root / "util.py").read_text() == UTIL_AFTER
    assert (ws.root / "greet.py").read_text() == GREET_BEFORE
    assert not nv.errors()


def test_review_view_approve_file_leaves_the_rest_pending(ws: Workspace) -> None:
    nv = ws.nvim
    start_session(ws)
    nv.cmd("Keel preview")
    nv.wait_note(r"previewing Greeting .* in 2 buffer\(s\)")
    nv.cmd("Keel diff")
    assert nv.wait("require('keel.review').view() ~= nil")
    nv.cmd("KeelApproveFile")
    record = ws.wait_record("approve")
    assert record["payload"] == {"bundleId": "b-1", "files": [ws.uri("greet.py")]}
    nv.wait_note(
        r"^Keel: approved greet\.py of Greeting \(2 files, V=0\) \[b-1\];"
        r" ledger entry 000000000000; left pending: util\.py"
        r" \(verified again and proposed as a new bundle\)$"
    )
    assert nv.wait("require('keel.review').view() == nil")
    assert (ws.root / "greet.py").read_text() == GREET_AFTER
    assert nv.wait(
        "#require('keel').pending() == 1 and require('keel').pending()[1].bundleId == 'b-2'"
    )
    # The approved file keeps the previewed text, now saved; the file left pending gets its
    # own text back (its change comes again in the new bundle).
    assert nv.wait("not vim.bo[vim.fn.bufnr(args[1])].modified", 15000, str(ws.root / "greet.py"))
    assert buffer_of(ws, "greet.py")["lines"] == GREET_AFTER.splitlines()
    assert {k: v for k, v in buffer_of(ws, "util.py").items() if k != "marks"} == {
        "lines": [""],
        "modified": False,
    }
    assert nv.lua("return next(require('keel.preview').list()) == nil")
    # The only file of a bundle: :KeelRejectFile rejects the bundle (no `files`).
    nv.cmd(f"edit {ws.root / 'util.py'}")
    nv.cmd("Keel diff")
    assert nv.wait("require('keel.review').view() ~= nil")
    nv.cmd("KeelRejectFile util is not needed")
    record = ws.wait_record("reject")
    assert record["payload"] == {"bundleId": "b-2", "reason": "util is not needed"}
    nv.wait_note(r"^Keel: rejected Greeting \(1 file, V=0\) \[b-2\]$")
    assert nv.wait("require('keel.review').view() == nil")
    assert not (ws.root / "util.py").exists()
    assert nv.wait("#require('keel').pending() == 0")
    assert not nv.errors()


def test_review_view_r_on_a_server_without_per_file_reject(nvim: Nvim, tmp_path: Path) -> None:
    ws = open_workspace(nvim, tmp_path, {"KEEL_FAKE_NO_FILE_REJECT": "1"})
    nv = ws.nvim
    start_session(ws)
    nv.cmd("Keel diff")
    assert nv.wait("require('keel.review').view() ~= nil")
    nv.cmd("KeelRejectFile no")
    assert ws.wait_record("reject")["payload"]["files"] == [ws.uri("greet.py")]
    note = nv.wait_note(r"cannot reject single files")
    assert note["level"] == 4
    assert "nothing was rejected" in note["msg"]
    # Nothing changed: the bundle is pending, the view open, greet.py as it was.
    assert nv.lua("return require('keel.review').view() ~= nil")
    assert [b["bundleId"] for b in nv.lua("return require('keel').pending()")] == ["b-1"]
    assert buffer_of(ws, "greet.py")["lines"] == GREET_BEFORE.splitlines()
    # :Keel reject in the view rejects its whole bundle, as everywhere.
    nv.cmd("Keel reject")
    ws.wait_record("reject", lambda r: r["payload"] == {"bundleId": "b-1"})
    assert nv.wait("require('keel.review').view() == nil")
    nv.wait_note(r"^Keel: rejected Greeting \(2 files, V=0\) \[b-1\]$")


def test_server_failure_is_reported_with_context(nvim: Nvim, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / ".git").mkdir(parents=True)
    (root / "a.py").write_text("A = 1\n")
    nvim.lua("require('keel').setup({ cmd = { 'definitely-not-keel', 'serve' } })")
    nvim.cmd(f"edit {root / 'a.py'}")
    note = nvim.wait_note(r"definitely-not-keel")
    assert note["level"] == 4
    assert "not an executable" in note["msg"]
    nvim.cmd("Keel status")
    assert nvim.wait(
        "#vim.tbl_filter(function(n) return n.msg:find('not an executable') end,"
        " _G.keel_test.notes) >= 1"
    )


def test_preview_in_place_then_reject_restores(ws: Workspace) -> None:
    nv = ws.nvim
    start_session(ws)
    nv.cmd("Keel preview")
    nv.wait_note(r"previewing Greeting .* in 2 buffer\(s\)")
    state = nv.lua(
        """
        local util = vim.fn.bufnr(...)
        return { greet = vim.api.nvim_buf_get_lines(0, 0, -1, false), modified = vim.bo.modified,
                 util = vim.api.nvim_buf_get_lines(util, 0, -1, false),
                 attached = vim.lsp.buf_is_attached(util, require('keel.client').all()[1].id) }
        """,
        str(ws.root / "util.py"),
    )
    assert state["greet"] == GREET_AFTER.splitlines() and state["modified"]
    assert state["util"] == UTIL_AFTER.splitlines() and state["attached"]
    assert (ws.root / "greet.py").read_text() == GREET_BEFORE  # nothing written
    # Diagnostics of the previewed text go out with the buffer's LSP version.
    nv.lua(
        "vim.diagnostic.set(vim.api.nvim_create_namespace('keel_test_checker'), 0,"
        " {{ lnum = 1, col = 11, severity = 1, message = 'about the proposal' }})"
    )
    record = ws.wait_record(
        "keel/editorDiagnostics", lambda r: len(r["payload"]["diagnostics"]) == 1
    )
    assert record["payload"]["version"] == nv.lua(
        "return vim.lsp.util.buf_versions[vim.api.nvim_get_current_buf()]"
    )
    nv.cmd("Keel reject")
    ws.wait_record("reject")
    assert nv.wait("not vim.bo.modified")
    restored = nv.lua(
        "local u = vim.fn.bufnr(...); return { vim.api.nvim_buf_get_lines(0, 0, -1, false),"
        " vim.api.nvim_buf_get_lines(u, 0, -1, false), vim.bo[u].modified }",
        str(ws.root / "util.py"),
    )
    assert restored == [GREET_BEFORE.splitlines(), [""], False]
    assert (ws.root / "greet.py").read_text() == GREET_BEFORE
    assert not (ws.root / "util.py").exists()
    assert not nv.errors()


def test_preview_in_place_then_approve_keeps_it(ws: Workspace) -> None:
    nv = ws.nvim
    start_session(ws)
    nv.cmd("Keel preview")
    nv.wait_note(r"previewing Greeting")
    nv.cmd("Keel approve")
    ws.wait_record("approve")
    nv.wait_note(r"approved Greeting")
    assert nv.wait("not vim.bo.modified")
    assert nv.lua("return vim.api.nvim_buf_get_lines(0, 0, -1, false)") == GREET_AFTER.splitlines()
    assert (ws.root / "greet.py").read_text() == GREET_AFTER
    assert nv.lua(
        "local u = vim.fn.bufnr(...); return { vim.api.nvim_buf_get_lines(u, 0, -1, false),"
        " vim.bo[u].modified }",
        str(ws.root / "util.py"),
    ) == [UTIL_AFTER.splitlines(), False]
    assert nv.lua("return next(require('keel.preview').list()) == nil")
    assert not nv.errors()
