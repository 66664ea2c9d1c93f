"""The plugin without a server, in real headless Neovim (every build the machine has):
setup and validation, :Keel and its completion, the version shims, diagnostic conversion
and debounced forwarding, signs, summaries, :checkhealth keel, the help file."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from keel_nvim_harness import PLUGIN, Nvim

from keel.lsp import payloads as P

LINE = "héllo wörld 😀 x = 1"  # 2-byte, 2-byte and 4-byte characters before "x"


def test_plugin_file_defines_only_command_and_plug_mappings(nvim: Nvim) -> None:
    assert nvim.lua("return vim.fn.exists(':Keel')") == 2
    # Nothing else loaded: modules are required lazily, and setup() is not called.
    assert nvim.lua("return package.loaded['keel'] == nil and package.loaded['keel.client'] == nil")
    assert nvim.lua("return require('keel').is_setup()") is False
    maps = nvim.lua(
        """
        local out = {}
        for _, m in ipairs(vim.api.nvim_get_keymap('n')) do
          if (m.desc or ''):find('^Keel') or m.lhs:find('keel') then out[#out + 1] = m.lhs end
        end
        table.sort(out)
        return out
        """
    )
    assert maps == [
        "<Plug>(keel-approve)",
        "<Plug>(keel-diff)",
        "<Plug>(keel-hover)",
        "<Plug>(keel-hunk-approve)",
        "<Plug>(keel-hunk-next)",
        "<Plug>(keel-hunk-prev)",
        "<Plug>(keel-hunk-preview)",
        "<Plug>(keel-hunk-reject)",
        "<Plug>(keel-preview)",
        "<Plug>(keel-reject)",
        "<Plug>(keel-status)",
    ]


def test_setup_defaults(nvim: Nvim) -> None:
    cfg = nvim.lua("local c = require('keel').setup(); c.on_attach = nil; return c")
    assert cfg["cmd"] == ["keel", "serve", "--stdio"]
    assert cfg["root_markers"] == [".git", "keel.toml", "pyproject.toml", "Cargo.toml"]
    assert "filetypes" not in cfg and "root_dir" not in cfg and "mode" not in cfg
    assert cfg["autostart"] is True
    assert cfg["diagnostics"] == {"forward": True, "debounce_ms": 300, "scope": "session"}
    assert cfg["review"]["layout"] == "vertical"
    assert cfg["review"]["keymaps"]["approve"] == "A"
    assert cfg["log"]["level"] == "warn"
    assert nvim.notes() == []
    assert nvim.lua("return require('keel').is_setup()") is True
    # Options merge over the defaults, nested ones too.
    cfg = nvim.lua(
        "return require('keel').setup({ mode = 'cautious', diagnostics = { debounce_ms = 50 },"
        " review = { keymaps = { close = false } } })"
    )
    assert cfg["mode"] == "cautious"
    assert cfg["diagnostics"] == {"forward": True, "debounce_ms": 50, "scope": "session"}
    assert cfg["review"]["keymaps"]["close"] is False
    assert cfg["review"]["keymaps"]["approve_file"] == "a"
    assert nvim.notes() == []


def test_setup_reports_invalid_options_and_keeps_defaults(nvim: Nvim) -> None:
    cfg = nvim.lua(
        """
        return require('keel').setup({
          cmd = 'keel serve', mode = 'reckless', bogus = true,
          diagnostics = { debounce_ms = 1.5, scope = 'everything' },
          signs = 'yes', review = { keymaps = { approve = 3 } },
        })
        """
    )
    assert cfg["cmd"] == ["keel", "serve", "--stdio"]
    assert "mode" not in cfg
    assert cfg["diagnostics"]["debounce_ms"] == 300
    assert cfg["diagnostics"]["scope"] == "session"
    assert cfg["signs"]["enabled"] is True
    assert cfg["review"]["keymaps"]["approve"] == "A"
    notes = nvim.notes()
    assert len(notes) == 1 and notes[0]["level"] == 4
    msg = notes[0]["msg"]
    assert msg.startswith("Keel: setup: ")
    for expected in (
        'option `cmd` must be string[], got "keel serve"',
        "option `mode` must be string|nil (one of",
        "option `diagnostics.debounce_ms` must be integer, got 1.5",
        'option `diagnostics.scope` must be string (one of "session", "attached")',
        "option `signs` must be a table",
        "option `review.keymaps.approve` must be string|false, got 3",
        "unknown option `bogus` ignored",
    ):
        assert expected in msg, msg
    nvim.lua("require('keel').setup('nope')")
    assert "setup() takes a table of options, got string" in nvim.notes()[-1]["msg"]


def test_keel_command_completion(nvim: Nvim) -> None:
    complete = "return vim.fn.getcompletion(..., 'cmdline')"
    assert nvim.lua(complete, "Keel ") == [
        "abort",
        "approve",
        "correct",
        "diff",
        "explain",
        "ledger",
        "log",
        "plan",
        "preview",
        "reject",
        "resume",
        "rollback",
        "start",
        "status",
    ]
    assert nvim.lua(complete, "Keel r") == ["reject", "resume", "rollback"]
    assert nvim.lua(complete, "Keel st") == ["start", "status"]
    assert nvim.lua(complete, "Keel start some") == []
    # No server, no ledger: nothing to complete, and no error.
    assert nvim.lua(complete, "Keel rollback ") == []
    nvim.cmd("Keel frobnicate")
    assert "unknown subcommand `frobnicate`" in nvim.errors()[-1]


def test_commands_without_a_server_report_with_context(nvim: Nvim, tmp_path: Path) -> None:
    nvim.lua("require('keel').setup({ cmd = { 'no-such-keel-binary', 'serve', '--stdio' } })")
    nvim.cmd(f"cd {tmp_path}")
    nvim.cmd("Keel status")
    assert nvim.wait("#_G.keel_test.notes > 0")
    msg = nvim.errors()[-1]
    assert "no-such-keel-binary" in msg and ":checkhealth keel" in msg
    nvim.lua(
        "vim.ui.input = function(opts, on_confirm)"
        " _G.keel_test.asked = opts.prompt; on_confirm(nil) end"
    )
    nvim.cmd("Keel start")  # no task: asks with vim.ui.input; cancelled here
    assert nvim.lua("return _G.keel_test.asked") == "Keel task: "
    nvim.cmd("Keel rollback")
    assert "rollback needs a ledger entry" in nvim.errors()[-1]
    nvim.cmd("Keel plan")  # no task: asks; cancelled here, so nothing is sent
    assert nvim.lua("return _G.keel_test.asked") == "Keel plan: "
    nvim.lua("require('keel').explain('  ')")
    assert "explain needs a question" in nvim.errors()[-1]


def test_version_shims(nvim: Nvim) -> None:
    result = nvim.lua(
        """
        local compat = require('keel.compat')
        local fired = {}
        vim.api.nvim_create_autocmd('User', { pattern = 'KeelTestEvent', callback = function(a)
          fired[#fired + 1] = a.data or 'no data' end })
        compat.fire_user('KeelTestEvent', { x = 1 })
        local h = compat.health()
        return {
          has07 = compat.has('0.7'), has99 = compat.has('99.0'),
          clients = #compat.get_clients({ name = 'keel' }),
          clients_buf = #compat.get_clients({ bufnr = 0 }),
          is_nil = { compat.is_nil(vim.NIL), compat.is_nil(nil), compat.is_nil(false) },
          value = compat.value(vim.NIL) == nil,
          islist = { compat.islist({ 1, 2 }), compat.islist({ a = 1 }), compat.islist('x') },
          diff = compat.diff('a\\nb\\n', 'a\\nc\\nd\\n', { result_type = 'indices' }),
          unified = compat.diff('a\\n', 'b\\n', {}),
          version = compat.buf_version(0, nil) == vim.api.nvim_buf_get_changedtick(0),
          fired = fired,
          health = type(h.start) == 'function' and type(h.ok) == 'function'
            and type(h.warn) == 'function' and type(h.error) == 'function',
          log = compat.stdpath('log', 'cache') ~= '',
          uv = compat.uv.hrtime() > 0,
        }
        """
    )
    assert result["has07"] is True and result["has99"] is False
    assert result["clients"] == 0 and result["clients_buf"] == 0
    assert result["is_nil"] == [True, True, False] and result["value"]
    assert result["islist"] == [True, False, False]
    assert result["diff"] == [[2, 1, 2, 2]]
    assert result["unified"] == "@@ -1 +1 @@\n-a\n+b\n"
    assert result["version"] and result["health"] and result["log"] and result["uv"]
    if nvim.build.label == "0.7":
        assert result["fired"] == ["no data"]  # 0.7 autocmds carry no data
    else:
        assert result["fired"] == [{"x": 1}]


def _byte_col(text: str, char_index: int) -> int:
    return len(text[:char_index].encode("utf-8"))


def _utf16(text: str, char_index: int) -> int:
    return len(text[:char_index].encode("utf-16-le")) // 2


def test_diagnostic_conversion_to_each_encoding(nvim: Nvim) -> None:
    nvim.lua("vim.api.nvim_buf_set_lines(0, 0, -1, false, { ... })", LINE)
    x = LINE.index("x")
    byte = _byte_col(LINE, x)
    assert (byte, _utf16(LINE, x), x) == (19, 15, 14)
    converted = nvim.lua(
        """
        local d = require('keel.diagnostics')
        local diag = { lnum = 0, col = ..., end_lnum = 0, end_col = select(2, ...),
          severity = 2, message = 'm', source = 'src',
          user_data = { lsp = { code = 'X1', tags = { 1 } } } }
        return { d.to_lsp(0, diag, 'utf-16'), d.to_lsp(0, diag, 'utf-8'),
                 d.to_lsp(0, diag, 'utf-32') }
        """,
        byte,
        len(LINE.encode("utf-8")),
    )
    end16, end32 = _utf16(LINE, len(LINE)), len(LINE)
    assert converted[0] == {
        "range": {"start": {"line": 0, "character": 15}, "end": {"line": 0, "character": end16}},
        "severity": 2,
        "message": "m",
        "source": "src",
        "code": "X1",
        "tags": [1],
    }
    assert converted[1]["range"]["start"]["character"] == byte
    assert converted[1]["range"]["end"]["character"] == len(LINE.encode("utf-8"))
    assert converted[2]["range"]["start"]["character"] == x
    assert converted[2]["range"]["end"]["character"] == end32
    # Positions past the end of the line clamp; lines past the end keep the column.
    edge = nvim.lua(
        "local d = require('keel.diagnostics');"
        " return { d.position(0, 0, 999, 'utf-16'), d.position(0, 5, 3, 'utf-16') }"
    )
    assert edge == [{"line": 0, "character": end16}, {"line": 5, "character": 3}]


def test_debounced_forwarding_message_shape(nvim: Nvim, tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text(LINE + "\nsecond line\n")
    other = tmp_path / "other.py"
    other.write_text("y = 2\n")
    nvim.cmd(f"edit {other}")
    nvim.cmd(f"edit {src}")
    sent = nvim.lua(
        """
        require('keel').setup({ autostart = false, diagnostics = { debounce_ms = 200 } })
        local client = require('keel.client')
        -- A stand-in client, and a notify that records instead of sending.
        local fake = { id = 4242, name = 'keel', offset_encoding = 'utf-16' }
        client.for_buf = function() return fake end
        client.all = function() return { fake } end
        _G.keel_test.sent = {}
        client.notify = function(method, params, c)
          table.insert(_G.keel_test.sent, { method = method, params = params, client = c.id })
          return true
        end
        local uri = vim.uri_from_bufnr(0)
        local energy = { v = 0, v_syn = 0, v_str = 0, v_log = 0, v_boot = 0, v_sheaf = 0,
          epsilon = 0.1, stable = true }
        assert(require('keel.session').on_bundle_proposed({ bundleId = 'b-1', nodeId = 'node-1',
          title = 'T', files = { uri }, energy = energy, sessionId = 's' }))
        local checker = vim.api.nvim_create_namespace('keel_test_checker')
        local linter = vim.api.nvim_create_namespace('keel_test_linter')
        local own = vim.lsp.diagnostic.get_namespace(fake.id)
        local col = ...
        -- A burst: three changes inside the debounce window.
        vim.diagnostic.set(checker, 0, { { lnum = 0, col = 0, message = 'first', severity = 1 } })
        vim.diagnostic.set(checker, 0, { { lnum = 0, col = col, end_lnum = 0, end_col = col + 1,
          message = 'bad x', severity = 1, source = 'checker', code = 7 } })
        vim.diagnostic.set(linter, 0, { { lnum = 1, col = 0, message = 'style', severity = 3,
          source = 'linter' } })
        -- Keel's own diagnostics never go back: its namespace, and source "keel".
        vim.diagnostic.set(own, 0, { { lnum = 0, col = 0, message = 'own ns', severity = 1 } })
        vim.diagnostic.set(vim.api.nvim_create_namespace('elsewhere'), 0,
          { { lnum = 0, col = 0, message = 'echo', severity = 1, source = 'keel' } })
        local immediately = #_G.keel_test.sent
        vim.wait(5000, function() return #_G.keel_test.sent > 0 end, 10)
        vim.wait(400) -- no second message for the same burst
        return { immediately = immediately, sent = _G.keel_test.sent,
                 tick = vim.api.nvim_buf_get_changedtick(0), uri = uri }
        """,
        _byte_col(LINE, LINE.index("x")),
    )
    assert sent["immediately"] == 0
    assert len(sent["sent"]) == 1, sent["sent"]
    message = sent["sent"][0]
    assert message["method"] == "keel/editorDiagnostics"
    assert message["client"] == 4242
    assert message["params"] == {
        "uri": sent["uri"],
        "version": sent["tick"],
        "diagnostics": [
            {
                "range": {
                    "start": {"line": 0, "character": 15},
                    "end": {"line": 0, "character": 16},
                },
                "severity": 1,
                "message": "bad x",
                "source": "checker",
                "code": 7,
            },
            {
                "range": {"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 0}},
                "severity": 3,
                "message": "style",
                "source": "linter",
            },
        ],
    }
    # A file outside the session is not forwarded; clearing a session file sends [].
    after = nvim.lua(
        """
        local checker = vim.api.nvim_create_namespace('keel_test_checker')
        local linter = vim.api.nvim_create_namespace('keel_test_linter')
        local other = vim.fn.bufnr(...)
        vim.diagnostic.set(checker, other, { { lnum = 0, col = 0, message = 'x', severity = 1 } })
        vim.diagnostic.reset(checker, 0)
        vim.diagnostic.reset(linter, 0)
        vim.wait(5000, function() return #_G.keel_test.sent > 1 end, 10)
        vim.wait(400)
        return _G.keel_test.sent
        """,
        str(other),
    )
    assert len(after) == 2
    assert after[1]["params"]["uri"] == sent["uri"]
    assert after[1]["params"]["diagnostics"] == []


def test_signs_mark_changed_lines(nvim: Nvim) -> None:
    hunks = nvim.lua(
        """
        vim.api.nvim_buf_set_lines(0, 0, -1, false, { 'a', 'b', 'c', 'd' })
        local signs = require('keel.signs')
        local out = {
          change = signs.hunks(0, 'a\\nB\\nc\\nd\\n'),
          add = signs.hunks(0, 'a\\nb\\nnew\\nc\\nd\\n'),
          delete = signs.hunks(0, 'a\\nd\\n'),
          top = signs.hunks(0, 'new\\na\\nb\\nc\\nd\\n'),
        }
        out.placed = signs.place(0, 'a\\nB\\nc\\n')
        out.list = signs.list(0)
        return out
        """
    )
    assert hunks["change"] == [{"kind": "change", "first": 1, "last": 1}]
    assert hunks["add"] == [{"kind": "add", "first": 1, "last": 1}]
    assert hunks["delete"] == [{"kind": "delete", "first": 1, "last": 2}]
    assert hunks["top"] == [{"kind": "add", "first": 0, "last": 0}]
    assert hunks["placed"] == 2
    assert hunks["list"] == [{"line": 1, "text": "┃"}, {"line": 3, "text": "_"}]


def _energy(v: float, **components: float) -> P.Energy:
    parts = {f"v_{c}": components.get(c, 0.0) for c in ("syn", "str", "log", "boot", "sheaf")}
    return P.Energy(v=v, **parts, epsilon=0.1, stable=v < 0.1)


def _summary_payload() -> Any:
    """A summary exactly as the server builds it (keel.lsp.payloads)."""
    nodes = [
        P.SummaryNode(
            id="node-1",
            title="Core",
            kind="code",
            state="committed",
            owns=["core.py"],
            depends_on=[],
            attempts=1,
            energy=_energy(0.01, syn=0.01),
            ledger_entry="abc",
        ),
        P.SummaryNode(
            id="node-2",
            title="Tests",
            kind="unit_test",
            state="awaiting_approval",
            owns=["tests/test_core.py"],
            depends_on=["node-1"],
            attempts=1,
            energy=None,
            ledger_entry=None,
        ),
    ]
    bundle = P.BundleProposed(
        bundle_id="b-2",
        node_id="node-2",
        title="Tests",
        files=["file:///ws/tests/test_core.py"],
        energy=_energy(0.5, log=0.5),
        session_id="s-1",
    )
    return P.SessionSummary(
        session_id="s-1",
        task="Add core",
        running=True,
        outcome=None,
        reason="",
        mode="cautious",
        epsilon=0.1,
        nodes=nodes,
        pending_bundles=[bundle],
        sessions=[],
    ).wire()


def test_summaries_and_ledger_entries_are_read_as_the_server_sends_them(nvim: Nvim) -> None:
    summary = _summary_payload()
    entry = P.LedgerEntry(
        sha="abc",
        title="Core",
        session_id="s-1",
        node_id="node-1",
        bundle="b-1",
        energy="V=0.01",
        approved_by="user",
        timestamp="2026-12-04T10:00:00+00:00",
        files=["core.py"],
        reverts=None,
    ).wire()
    out = nvim.lua(
        """
        local summary, entry = ...
        local session, format = require('keel.session'), require('keel.format')
        local gone0 = session.on_summary(summary, '/ws')
        local pending = session.pending()
        local lines = format.summary_lines(session.summary(), pending)
        -- A copy (vim.deepcopy cannot copy the vim.NIL of JSON null on Neovim 0.7).
        local done = vim.json.decode(vim.json.encode(summary))
        done.pendingBundles = {}
        local gone = session.on_summary(done, '/ws')
        return {
          gone0 = gone0, gone = gone, files = pending[1].files, lines = lines,
          session_file = session.is_session_file('file:///ws/tests/test_core.py'),
          ledger = format.ledger_entries({ entry }),
          ledger_line = format.ledger_line(entry),
          label = format.bundle_label({ bundleId = 'b', title = 'T', files = { 'x' } }),
        }
        """,
        summary,
        entry,
    )
    assert out["gone0"] == [] and out["gone"] == ["b-2"]
    assert out["files"] == ["file:///ws/tests/test_core.py"]
    assert out["lines"] == [
        "session s-1 running: 1 committed, 1 awaiting_approval; 1 pending bundle",
        "  task: Add core",
        "  node-1     committed          V=0.01     Core",
        "  node-2     awaiting_approval  V=-        Tests",
        "  pending: Tests (1 file, V=0.5 (log 0.5)) [b-2]",
    ]
    assert out["session_file"] is True  # named by node-2's owns
    assert out["ledger"][0]["sha"] == "abc" and out["ledger"][0]["title"] == "Core"
    assert out["ledger_line"] == "abc  2026-12-04T10:00:00+00:00  Core  [V=0.01]"
    assert out["label"] == "T (1 file) [b]"


def test_payloads_in_other_shapes_are_refused_with_the_reason(nvim: Nvim) -> None:
    """The spellings an earlier plugin tolerated are errors now, and nothing is recorded."""
    summary = _summary_payload()
    out = nvim.lua(
        """
        local summary = ...
        local session, format = require('keel.session'), require('keel.format')
        assert(session.on_summary(summary, '/ws'))
        local function copy(t)
          return vim.json.decode(vim.json.encode(t))
        end
        local function try(f, ...)
          local value, err = f(...)
          return { ok = value ~= nil, err = err }
        end
        local snake = copy(summary)
        snake.pending_bundles, snake.pendingBundles = snake.pendingBundles, nil
        local loose_node = copy(summary)
        loose_node.nodes[1] = { node_id = 'node-1', status = 'committed' }
        local old_bundle = copy(summary.pendingBundles[1])
        old_bundle.bundle_id, old_bundle.bundleId = old_bundle.bundleId, nil
        local bare_energy = copy(summary.pendingBundles[1])
        bare_energy.energy = { V = 0.5 }
        return {
          snake = try(session.on_summary, snake, '/ws'),
          loose_node = try(session.on_summary, loose_node, '/ws'),
          not_object = try(session.on_summary, 'summary', '/ws'),
          null = try(session.on_summary, vim.NIL, '/ws'),
          bundle = try(session.on_bundle_proposed, old_bundle),
          energy = try(session.on_bundle_proposed, bare_energy),
          ledger = try(format.ledger_entries, { entries = { { commit = 'def', message = 'm' } } }),
          ledger_item = try(format.ledger_entries, { { sha = 'abc', message = 'm' } }),
          still = session.summary().sessionId,
          pending = #session.pending(),
        }
        """,
        summary,
    )
    assert out["snake"] == {"ok": False, "err": "SessionSummary: missing pendingBundles"}
    assert out["loose_node"]["err"].startswith("SummaryNode: missing id, title, kind, state")
    assert out["loose_node"]["err"].endswith("(item 1)")
    assert out["not_object"]["err"] == "SessionSummary: expected a JSON object, got string"
    assert out["null"]["err"] == "SessionSummary: expected a JSON object, got null"
    assert out["bundle"]["err"] == "BundleProposed: missing bundleId"
    assert out["energy"]["err"].startswith("Energy: missing v, v_syn")
    assert out["ledger"]["err"] == "LedgerResult: expected a list, got an object"
    assert out["ledger_item"]["err"].startswith("LedgerEntry: missing title, sessionId")
    assert out["still"] == "s-1" and out["pending"] == 1  # what was known stays


def test_progress_is_notified_and_fires_events(nvim: Nvim) -> None:
    out = nvim.lua(
        """
        require('keel').setup({ autostart = false, notify = { progress_throttle_ms = 0 } })
        local p = require('keel.progress')
        local events = 0
        vim.api.nvim_create_autocmd('User', { pattern = 'KeelProgress',
          callback = function() events = events + 1 end })
        local function send(value) p.on_progress({ token = 't', value = value }, 1) end
        send({ kind = 'begin', title = 'Keel: Planning', percentage = 0 })
        local during = require('keel').statusline()
        send({ kind = 'report', message = 'node-2', percentage = 50 })
        send({ kind = 'report', message = 'node-2', percentage = 60 })
        send({ kind = 'end', message = 'done' })
        return { events = events, during = during, after = require('keel').statusline() }
        """
    )
    assert out == {"events": 4, "during": "Keel: Planning [0%]", "after": ""}
    assert [n["msg"] for n in nvim.notes()] == [
        "Keel: Planning [0%]",
        "Keel: Planning [50%]: node-2",  # the repeated message is not shown again
        "Keel: Planning: done",
    ]


def test_root_detection(nvim: Nvim, tmp_path: Path) -> None:
    (tmp_path / "proj" / "pkg").mkdir(parents=True)
    (tmp_path / "proj" / "pyproject.toml").write_text("")
    (tmp_path / "proj" / "pkg" / "m.py").write_text("")
    (tmp_path / "loose.txt").write_text("")
    out = nvim.lua(
        """
        local client = require('keel.client')
        local root, loose = ...
        vim.cmd('edit ' .. root .. '/pkg/m.py')
        local found = client.root_for(0)
        local ok = client.eligible(0, found)
        vim.cmd('edit ' .. loose)
        local none = client.root_for(0)
        require('keel').setup({ autostart = false, root_dir = root .. '/pkg' })
        local forced = client.root_for(0)
        require('keel').setup({ autostart = false, filetypes = { 'rust' } })
        vim.cmd('edit ' .. root .. '/pkg/m.py')
        vim.bo.filetype = 'python'
        return { found = found, ok = ok, none = none or vim.NIL, forced = forced,
                 wrong_ft = client.eligible(0, found) }
        """,
        str(tmp_path / "proj"),
        str(tmp_path / "loose.txt"),
    )
    assert out["found"] == str(tmp_path / "proj") and out["ok"] is True
    assert out["none"] is None
    assert out["forced"] == str(tmp_path / "proj" / "pkg")
    assert out["wrong_ft"] is False


def test_lsp_config_for_vim_lsp_enable(nvim: Nvim) -> None:
    out = nvim.lua(
        """
        local cfg = dofile(...)
        local caps = cfg.capabilities.workspace.workspaceEdit
        return { cmd = cfg.cmd, markers = cfg.root_markers, name = cfg.name,
          handlers = vim.tbl_keys(cfg.handlers), annotations = caps.changeAnnotationSupport == nil
            or caps.changeAnnotationSupport == vim.NIL }
        """,
        str(PLUGIN / "lsp" / "keel.lua"),
    )
    assert out["cmd"] == ["keel", "serve", "--stdio"]
    assert out["markers"] == [".git", "keel.toml", "pyproject.toml", "Cargo.toml"]
    assert out["name"] == "keel"
    assert sorted(out["handlers"]) == ["$/progress", "keel/bundleProposed", "keel/sessionChanged"]
    assert out["annotations"]
    if nvim.build.label != "0.7":
        assert nvim.lua("return vim.lsp.config.keel.cmd") == ["keel", "serve", "--stdio"]


def _health(nvim: Nvim) -> list[str]:
    nvim.cmd("checkhealth keel")
    assert nvim.lua("return vim.bo.filetype") == "checkhealth"
    return list(nvim.lua("return vim.api.nvim_buf_get_lines(0, 0, -1, false)"))


def test_checkhealth_reports_each_check(nvim: Nvim, tmp_path: Path) -> None:
    keel = shutil.which("keel", path=str(Path(sys.executable).parent))
    if keel is None:
        pytest.skip("the keel command is not installed next to this Python")
    transcript = tmp_path / "t.jsonl"
    transcript.write_text("")
    nvim.lua(
        "require('keel').setup({ autostart = false, cmd = { ..., 'serve', '--stdio' },"
        " cmd_env = { KEEL_MODEL = 'replay:' .. select(2, ...) } })",
        keel,
        str(transcript),
    )
    text = "\n".join(_health(nvim))
    assert "keel: server" in text
    assert f"`{keel}` found: {keel}" in text
    assert "version: keel " in text
    assert "Python 3." in text
    assert "checker: " in text and "test runner: " in text
    assert f"model replay:{transcript} (from cmd_env.KEEL_MODEL)" in text
    assert "recorded transcript found" in text
    # `serve` is the one check that depends on the language server being built.
    assert "serve` is available" in text or "serve` is not available" in text
    # A missing server and model are errors/warnings with advice.
    nvim.lua(
        "require('keel').setup({ autostart = false, cmd = { 'no-such-keel', 'serve' } })"
        " vim.env.KEEL_MODEL = nil"
    )
    nvim.cmd(f"cd {tmp_path}")
    text = "\n".join(_health(nvim))
    assert "ERROR" in text and "`no-such-keel` not found" in text
    assert "no model configured" in text


def test_help_tags_generate(nvim: Nvim, tmp_path: Path) -> None:
    doc = tmp_path / "rt" / "doc"
    shutil.copytree(PLUGIN / "doc", doc)
    (doc / "tags").unlink(missing_ok=True)
    nvim.cmd(f"helptags {doc}")
    tags = {line.split("\t")[0] for line in (doc / "tags").read_text().splitlines()}
    for tag in (
        "keel",
        "keel.txt",
        ":Keel",
        ":Keel-start",
        ":Keel-rollback",
        "<Plug>(keel-approve)",
        "<Plug>(keel-reject)",
        "<Plug>(keel-diff)",
        "<Plug>(keel-status)",
        "keel-setup",
        "keel-options",
        "keel-opt-cmd",
        "keel-opt-diagnostics.debounce_ms",
        "keel-health",
        "keel.setup()",
        "KeelBundleProposed",
        ":KeelApproveFile",
    ):
        assert tag in tags, tag
    assert not nvim.errors()
    nvim.cmd(f"set rtp^={doc.parent}")
    nvim.cmd("help :Keel-diff")
    assert nvim.lua("return vim.fn.expand('%:t')") == "keel.txt"


def test_help_documents_every_option(nvim: Nvim) -> None:
    """The option reference is generated from the schema (scripts/docgen.lua)."""
    ok = nvim.lua(
        "return dofile(select(1, ...)).check(select(2, ...))",
        str(PLUGIN / "scripts" / "docgen.lua"),
        str(PLUGIN / "doc" / "keel.txt"),
    )
    assert ok, (
        "doc/keel.txt is out of date: nvim --headless -u NONE -i NONE"
        " -c \"lua dofile('scripts/docgen.lua').write()\" -c 'qa!'"
    )


def test_every_lua_file_loads(nvim: Nvim) -> None:
    files = sorted(
        str(p.relative_to(PLUGIN))
        for p in PLUGIN.rglob("*.lua")
        if "tests" not in p.parts and "node_modules" not in p.parts
    )
    assert "plugin/keel.lua" in files and "lua/keel/init.lua" in files
    errors = nvim.lua(
        """
        local root, files = ...
        local out = {}
        for _, f in ipairs(files) do
          local chunk, err = loadfile(root .. '/' .. f)
          if not chunk then out[#out + 1] = err end
        end
        return out
        """,
        str(PLUGIN),
        files,
    )
    assert errors == []
    assert os.path.exists(PLUGIN / "stylua.toml")
