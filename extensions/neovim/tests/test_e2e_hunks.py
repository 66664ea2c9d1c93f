"""End to end, hunk by hunk: real Neovim, the real `keel serve` and engine, real git, the
repository's fake model server.

The must-show of per-hunk review: a bundle with two hunks in one file; `ga` approves one
in the review view (the ledger commit holds it alone), the other comes back as a new
bundle with the same id and the view follows it; `gr` rejects it with a reason, and the
node's next model request carries its lines and the reason; every loaded buffer matches
the disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from keel_nvim_harness import Nvim
from test_e2e import (
    GIT_ENV,
    MISSING,
    SESSION_TIMEOUT_MS,
    _attach,
    _entries,
    _fake_model_server,
    git,
)

from keel.bundles.hunks import file_hunks

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

BASE = "def greet(name):\n    return 'hi ' + name\n\n\nVERSION = 1\n"
AFTER = "def greet(name: str) -> str:\n    return 'hi ' + name\n\n\nVERSION = 2\n"
A_ONLY = "def greet(name: str) -> str:\n    return 'hi ' + name\n\n\nVERSION = 1\n"
THIRD = A_ONLY + "NOTE = 'kept at 1'\n"
A, B = file_hunks("greet.py", BASE.encode(), AFTER.encode())
REASON = "keep VERSION at 1"


def _script() -> list[dict[str, Any]]:
    """Attempt 1 writes AFTER (hunks A and B); attempts 2 and 3 write THIRD."""
    first = _entries({"greet.py": AFTER})
    later = _entries({"greet.py": THIRD})
    return [first[0], first[1], *later[2:]]


def _pending(nvim: Nvim) -> list[str]:
    return [b["bundleId"] for b in nvim.lua("return require('keel').pending()")]


def _view(nvim: Nvim) -> dict[str, Any] | None:
    view = nvim.lua(
        """
        local v = require('keel.review').view()
        if not v then return nil end
        return { bundle = v.bundle.bundleId,
          ids = vim.tbl_map(function(h) return h.id end, v.files[v.index].hunks),
          current = vim.api.nvim_get_current_win() == v.right,
          line = vim.api.nvim_win_get_cursor(v.right)[1] }
        """
    )
    return dict(view) if view else None


def _buffers_match_the_disk(nvim: Nvim, root: Path) -> None:
    buffers = nvim.lua(
        """
        local out = {}
        for _, b in ipairs(vim.api.nvim_list_bufs()) do
          local name = vim.api.nvim_buf_get_name(b)
          if vim.api.nvim_buf_is_loaded(b) and vim.bo[b].buftype == '' and name ~= '' then
            out[#out + 1] = { name = name, lines = vim.api.nvim_buf_get_lines(b, 0, -1, false),
              modified = vim.bo[b].modified }
          end
        end
        return out
        """
    )
    assert buffers, "no file buffer is loaded"
    for buf in buffers:
        path = Path(buf["name"])
        assert path.is_relative_to(root), buf["name"]
        assert not buf["modified"], buf["name"]
        assert "\n".join(buf["lines"]) + "\n" == path.read_text(), buf["name"]


def test_approve_one_hunk_and_reject_the_other_with_a_reason(nvim: Nvim, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with _fake_model_server()(_script()) as model:
        env = {
            "KEEL_MODEL": "openai:gpt-4.1",
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "OPENAI_BASE_URL": model.openai_base_url,
            **GIT_ENV,
        }
        _attach(nvim, root, {"greet.py": BASE}, env)
        head = git(root, "rev-parse", "HEAD").strip()
        nvim.cmd("Keel start Type greet and bump VERSION")
        nvim.wait_note(r"session \S+ started", 60_000)
        assert nvim.wait("#require('keel').pending() == 1", SESSION_TIMEOUT_MS), nvim.notes()
        (first,) = _pending(nvim)

        # The review: greet.py with its two hunks, signed, the cursor on the first.
        nvim.cmd("Keel diff")
        assert nvim.wait("require('keel.review').view() ~= nil", 60_000), nvim.notes()
        view = _view(nvim)
        assert view == {"bundle": first, "ids": [A.id, B.id], "current": True, "line": 1}
        signs = nvim.lua(
            "return require('keel.hunks').placed("
            "vim.api.nvim_win_get_buf(require('keel.review').view().right))"
        )
        assert signs == [
            {"lnum": 1, "name": "KeelHunkChange"},
            {"lnum": 5, "name": "KeelHunkChange"},
        ]

        # ga: hunk A alone is verified, committed and written.
        nvim.lua("vim.api.nvim_feedkeys('ga', 'x', false)")
        nvim.wait_note(
            r"approved hunk greet\.py @@ -1,1 \+1,1 @@ of Greeting .*; ledger entry \w+;"
            r" left pending: greet\.py \(1 hunk\)",
            SESSION_TIMEOUT_MS,
        )
        assert git(root, "rev-parse", "HEAD~1").strip() == head
        assert git(root, "show", "HEAD:greet.py") == A_ONLY  # the commit holds A alone
        assert git(root, "show", "--name-only", "--format=", "HEAD").split() == ["greet.py"]
        assert (root / "greet.py").read_text() == A_ONLY

        # B comes back as a new bundle with its id; the view follows it, on B.
        assert nvim.wait(
            "(require('keel.review').view() or { bundle = {} }).bundle.bundleId ~= args[1]"
            " and require('keel.review').view() ~= nil",
            SESSION_TIMEOUT_MS,
            first,
        ), nvim.notes()
        view = _view(nvim)
        assert view is not None and view["ids"] == [B.id] and view["line"] == 5
        second = view["bundle"]
        assert _pending(nvim) == [second]
        _buffers_match_the_disk(nvim, root)

        # gr with a reason: B is dropped; no hunk is left, so the node works again.
        requests = len(model.requests)
        nvim.lua(
            "local reason = ...; vim.ui.input = function(_, on_confirm) on_confirm(reason) end"
            " vim.api.nvim_feedkeys('gr', 'x', false)",
            REASON,
        )
        nvim.wait_note(r"rejected hunk greet\.py @@ -5,1 \+5,1 @@ of Greeting .*" + second, 60_000)
        assert nvim.wait("require('keel.review').view() == nil")
        assert nvim.wait(
            "#require('keel').pending() == 1 and require('keel').pending()[1].bundleId ~= args[1]",
            SESSION_TIMEOUT_MS,
            second,
        ), nvim.notes()
        asked = [
            r
            for r in model.requests[requests:]
            if r.headers.get("X-Keel-Tier") == "actuator"
            and r.headers.get("X-Keel-Node") == "node-1"
        ]
        assert asked, "the node's next model request did not come"
        text = "\n".join(str(m.get("content")) for m in asked[0].body["messages"])
        assert "The reviewer rejected these changes:" in text
        assert "greet.py @@ -5,1 +5,1 @@\n-VERSION = 1\n+VERSION = 2" in text
        assert f"Reason: {REASON}" in text
        # Nothing more was committed; file and buffers as after A.
        assert git(root, "rev-parse", "HEAD~1").strip() == head
        assert (root / "greet.py").read_text() == A_ONLY
        _buffers_match_the_disk(nvim, root)
        assert not nvim.errors(), nvim.errors()
