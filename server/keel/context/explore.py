"""Read-only tools the architect may call before it plans: search, open, symbol, list.

Everything a tool returns is text the model reads, so a refusal is a result too: the model
sees why (``refused: ...``) and can ask for something else. The policy, enforced on every
path a tool is given or reports:

- workspace-relative paths only: no absolute path, no ``..``, no ``\\``;
- nothing under ``.git/`` or ``.keel/``, and no path whose symlinks lead outside the
  workspace or into those folders;
- only files of the inventory (what the user means: tracked, or untracked and not ignored),
  and never a secret-looking one (``.env``, keys).

Every result is bounded (``limit`` characters, cut with a note saying what was left out).
Blocking work (reading files, parsing) runs in a thread.
"""

from __future__ import annotations

import ast
import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.bundles.paths import PathError, normalize, resolve_inside
from keel.engine.ports import ToolResult, ToolSpec

#: What one result may hold when the caller gives no smaller limit.
DEFAULT_LIMIT = 8_000
#: Lines one ``open_file`` call shows at most.
MAX_OPEN_LINES = 400
#: Files larger than this are not searched or opened (generated or data files).
MAX_FILE_BYTES = 1_000_000
MAX_RESULTS = 200
#: A group holding a quantifier, itself quantified, or a backreference: the shapes whose
#: backtracking can run for hours on one line; such patterns are refused.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]|\\[1-9]")
#: Matches shown per file when a search spans several, so one file cannot crowd out the rest.
PER_FILE = 10
MAX_PATTERN = 200
#: Seconds a search or symbol lookup may scan files before it answers with what it found.
SCAN_SECONDS = 10.0
#: Characters of file text an explorer keeps in memory between calls.
CACHE_CHARS = 64_000_000
#: Characters of a line a search looks at (minified lines would make patterns slow).
MAX_LINE = 2_000

SEARCH, OPEN, SYMBOL, LIST = "search_code", "open_file", "find_symbol", "list_folder"

SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        SEARCH,
        "Search the workspace's files for a literal string (or a Python regular expression "
        "with regex=true). Returns path:line: text per match.",
        {
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "what to look for"},
                "regex": {"type": "boolean", "description": "treat pattern as a regex"},
                "path": {"type": "string", "description": "only under this folder or file"},
                "max_results": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS},
            },
            "required": ["pattern"],
        },
    ),
    ToolSpec(
        OPEN,
        f"Show lines of a file with line numbers (at most {MAX_OPEN_LINES} lines a call).",
        {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "workspace-relative file path"},
                "start": {"type": "integer", "minimum": 1, "description": "first line"},
                "end": {"type": "integer", "minimum": 1, "description": "last line"},
            },
            "required": ["path"],
        },
    ),
    ToolSpec(
        SYMBOL,
        "Find where a class, function or variable is defined and where it is referenced.",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "the identifier, e.g. parse_args"}
            },
            "required": ["name"],
        },
    ),
    ToolSpec(
        LIST,
        "List a folder of the workspace: its files and subfolders (with their file counts).",
        {
            "type": "object",
            "properties": {"path": {"type": "string", "description": "folder; '.' is the root"}},
            "required": [],
        },
    ),
)


class Refused(Exception):
    """A request the policy refuses; the message is what the model is told."""


@dataclass(frozen=True)
class Workspace:
    """The files the tools may read: ``root``, its inventory and the secret test."""

    root: Path
    files: Collection[str]
    secret: Callable[[str], bool]
    #: What the tools read, kept for the explorer's life (one planning phase, during which
    #: nothing is written): file texts (``None``: unreadable) and readability verdicts.
    texts: dict[str, str | None] = field(default_factory=dict)
    readable: dict[str, bool] = field(default_factory=dict)
    cached_chars: list[int] = field(default_factory=lambda: [0])
    definitions: dict[str, dict[str, set[int]]] = field(default_factory=dict)


class WorkspaceExplorer:
    """:class:`~keel.engine.ports.ExplorationTools` over one workspace's inventory.

    ``files`` are the inventory's workspace-relative paths (``path in files`` is the test
    for "the user means this file"), or ``load`` lists them when a tool is first called (a
    session that never explores never lists); ``secret`` says whether a path looks like it
    holds a secret (``.env``, ``id_rsa``, ``*.pem``).
    """

    def __init__(
        self,
        root: Path,
        files: Iterable[str] | None = None,
        secret: Callable[[str], bool] = lambda path: False,
        *,
        load: Callable[[], Awaitable[Iterable[str]]] | None = None,
    ) -> None:
        if (files is None) == (load is None):
            raise ValueError("give exactly one of files and load")
        self._root = root
        self._secret = secret
        self._load = load
        self._ws = None if files is None else Workspace(root, frozenset(files), secret)
        self._loading = asyncio.Lock()

    def specs(self) -> Sequence[ToolSpec]:
        return SPECS

    async def _workspace(self) -> Workspace:
        async with self._loading:
            if self._ws is None and self._load is not None:
                self._ws = Workspace(self._root, frozenset(await self._load()), self._secret)
        assert self._ws is not None
        return self._ws

    async def call(
        self, name: str, arguments: Mapping[str, Any], limit: int = DEFAULT_LIMIT
    ) -> ToolResult:
        """Run one tool; never raises for bad input (a refusal or error is the result)."""
        limit = max(0, min(limit, DEFAULT_LIMIT * 4))
        tool = _TOOLS.get(name)
        if tool is None:
            known = ", ".join(spec.name for spec in SPECS)
            text = f"refused: unknown tool {_clip(repr(name), 80)}; the tools are {known}"
            return ToolResult(bound(text, limit), True)
        if not isinstance(arguments, Mapping):
            return ToolResult(bound("refused: the arguments must be a JSON object", limit), True)
        try:
            ws = await self._workspace()
        except OSError as exc:
            text = f"refused: the workspace's files cannot be listed ({exc.strerror or exc})"
            return ToolResult(bound(text, limit), True)
        try:
            text = await asyncio.to_thread(tool, ws, arguments)
        except Refused as exc:
            return ToolResult(bound(f"refused: {exc}", limit), True)
        return ToolResult(bound(text, limit), False)


def bound(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a line end, saying how much was left out."""
    if len(text) <= limit:
        return text
    if limit < 120:  # no room for a note: the budget is nearly spent
        return text[: max(0, limit)]
    head = text[: limit - 80]
    head = head[: head.rfind("\n") + 1] or head
    left = text[len(head) :].count("\n") + 1
    return head + f"[cut: {left} more line(s) not shown; narrow the request]"


# ------------------------------------------------------------------------------- policy


def check_path(ws: Workspace, raw: object, *, folder: bool = False) -> str:
    """The canonical form of a path the model gave, or :class:`Refused` saying why not."""
    if not isinstance(raw, str):
        raise Refused("the path must be a string")
    if folder and raw.strip() in ("", ".", "./"):
        return "."
    if raw.startswith("~"):
        raise Refused(f"{raw}: absolute paths are refused; give a workspace-relative path")
    try:
        path = normalize(raw)
    except PathError as exc:
        raise Refused(_policy_reason(raw, str(exc))) from None
    try:
        resolve_inside(ws.root, path)
    except PathError as exc:
        raise Refused(str(exc)) from None
    if folder:
        if not any(f.startswith(path + "/") for f in ws.files):
            raise Refused(f"{path}: no such folder among the workspace's files")
        return path
    if ws.secret(path):
        raise Refused(f"{path}: looks like it holds secrets; its content is never shown")
    if path not in ws.files:
        if (ws.root / path).is_dir():
            raise Refused(f"{path}: is a folder; use {LIST}")
        if (ws.root / path).exists():
            raise Refused(f"{path}: ignored by git (not among the workspace's files)")
        raise Refused(f"{path}: no such file")
    return path


def _policy_reason(raw: str, message: str) -> str:
    """The bundle path rules speak of writing; say the same for reading."""
    parts = [part for part in raw.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".git" in parts and "nested" not in message:
        return f"{raw}: .git/ is git's own data and is never read"
    if parts[:1] == [".keel"]:
        return f"{raw}: .keel/ is Keel's own state and is never read"
    return message.replace(" and never written by a bundle", "").replace(
        "are never written", "are never read"
    )


def _readable(ws: Workspace, path: str) -> bool:
    """Whether a file of the inventory may be shown (not secret, resolves inside, small)."""
    known = ws.readable.get(path)
    if known is None:
        known = ws.readable[path] = _check_readable(ws, path)
    return known


def _check_readable(ws: Workspace, path: str) -> bool:
    if ws.secret(path):
        return False
    try:
        target = resolve_inside(ws.root, path)
    except PathError:
        return False
    try:
        return target.is_file() and target.stat().st_size <= MAX_FILE_BYTES
    except OSError:
        return False


def _text(ws: Workspace, path: str) -> str | None:
    """The file's text (``None``: binary, huge or unreadable), read once per explorer."""
    if path in ws.texts:
        return ws.texts[path]
    try:
        data = resolve_inside(ws.root, path).read_bytes()
    except (OSError, PathError):
        return None
    text = None
    if len(data) <= MAX_FILE_BYTES and b"\0" not in data[:8192]:
        text = data.decode("utf-8", errors="replace")
    if ws.cached_chars[0] < CACHE_CHARS:
        ws.texts[path] = text
        ws.cached_chars[0] += len(text or "")
    return text


def _lines(ws: Workspace, path: str) -> list[str] | None:
    text = _text(ws, path)
    return None if text is None else text.splitlines()


def _scope(ws: Workspace, raw: object) -> list[str]:
    """The readable inventory files under ``raw`` (a folder or one file), sorted."""
    if raw is None or raw == "" or raw == ".":
        chosen: Iterable[str] = ws.files
    else:
        if not isinstance(raw, str):
            raise Refused("the path must be a string")
        try:
            path = normalize(raw)
        except PathError as exc:
            raise Refused(_policy_reason(raw, str(exc))) from None
        if path in ws.files:
            chosen = [check_path(ws, path)]
        else:
            folder = check_path(ws, path, folder=True)
            chosen = [f for f in ws.files if f.startswith(folder + "/")]
    return sorted(f for f in chosen if _readable(ws, f))


def _int(arguments: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = arguments.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refused(f"{key} must be an integer, not {value!r}")
    return max(low, min(high, value))


# -------------------------------------------------------------------------------- tools


def search_code(ws: Workspace, arguments: Mapping[str, Any]) -> str:
    pattern = arguments.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise Refused("pattern must be a non-empty string")
    if len(pattern) > MAX_PATTERN:
        raise Refused(f"pattern is longer than {MAX_PATTERN} characters")
    literal = arguments.get("regex") is not True
    if not literal and _NESTED_QUANTIFIER.search(pattern):
        raise Refused(
            "a quantified group that itself repeats (like (a+)+) can take forever; "
            "simplify the pattern"
        )
    try:
        regex = re.compile(re.escape(pattern) if literal else pattern)
    except re.error as exc:
        raise Refused(f"invalid regular expression: {exc}") from None
    most = _int(arguments, "max_results", 50, 1, MAX_RESULTS)
    scope = _scope(ws, arguments.get("path"))
    per_file = most if len(scope) == 1 else PER_FILE
    hits: list[str] = []
    more = 0
    clock = _Deadline(len(scope))
    for path in scope:
        if clock.expired():
            break
        text = _text(ws, path)
        if text is None or (literal and pattern not in text):
            continue
        matches = [
            f"{path}:{number}: {_clip(line.strip())}"
            for number, line in enumerate(text.splitlines(), start=1)
            if regex.search(line, 0, MAX_LINE)
        ]
        shown = matches[: min(per_file, most - len(hits))]
        hits.extend(shown)
        if len(matches) > len(shown) and len(hits) < most:
            hits.append(f"[{path}: {len(matches) - len(shown)} more match(es) in this file]")
        elif len(matches) > len(shown):
            more += len(matches) - len(shown)
    tail = [f"[{more} more match(es) not shown; narrow the search]"] if more else []
    tail += clock.note()
    if not hits:
        return "\n".join([f"no match for {pattern!r}", *clock.note()])
    return "\n".join([*hits, *tail])


def open_file(ws: Workspace, arguments: Mapping[str, Any]) -> str:
    path = check_path(ws, arguments.get("path"))
    lines = _lines(ws, path)
    if lines is None:
        raise Refused(f"{path}: binary or larger than {MAX_FILE_BYTES} bytes")
    start = _int(arguments, "start", 1, 1, max(1, len(lines)))
    end = _int(arguments, "end", start + 199, start, len(lines) or 1)
    end = min(end, start + MAX_OPEN_LINES - 1, len(lines))
    shown = [f"{n:>5}  {lines[n - 1]}" for n in range(start, end + 1)]
    head = f"{path} lines {start}-{end} of {len(lines)}"
    return "\n".join([head, *shown]) if shown else f"{path}: empty file"


_DEFINITION = r"^\s*(?:export\s+)?(?:pub\s+)?(?:async\s+)?(?:def|class|fn|function|struct|enum|trait|interface|type|const|let|var)\s+{name}\b"  # noqa: E501


def find_symbol(ws: Workspace, arguments: Mapping[str, Any]) -> str:
    name = arguments.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.]{0,99}", name):
        raise Refused("name must be an identifier such as parse_args or Context.invoke")
    short = name.rsplit(".", 1)[-1]
    word = re.compile(rf"\b{re.escape(short)}\b")
    textual = re.compile(_DEFINITION.format(name=re.escape(short)))
    definitions: list[str] = []
    references: list[str] = []
    total = 0
    scope = _scope(ws, None)
    clock = _Deadline(len(scope))
    for path in scope:
        if clock.expired():
            break
        text = _text(ws, path)
        if text is None or short not in text:
            continue
        lines = text.splitlines()
        defined = (
            _python_definitions(ws, path, lines, short)
            if path.endswith(".py")
            else {n for n, line in enumerate(lines, 1) if textual.search(line)}
        )
        for number in sorted(defined):
            definitions.append(f"{path}:{number}: {_clip(lines[number - 1].strip())}")
        found = [
            f"{path}:{number}: {_clip(line.strip())}"
            for number, line in enumerate(lines, start=1)
            if number not in defined and word.search(line)
        ]
        total += len(found)
        references.extend(found[:PER_FILE])
        if len(found) > PER_FILE:
            references.append(f"[{path}: {len(found) - PER_FILE} more reference(s) in this file]")
    if not definitions and not references:
        return "\n".join([f"{name}: not found in the workspace's files", *clock.note()])
    out = [f"definitions of {short} ({len(definitions)}):", *definitions[:40]]
    if len(definitions) > 40:
        out.append(f"[{len(definitions) - 40} more definition(s) not shown]")
    out.append(f"references ({total}):")
    out.extend(references[:100])
    if len(references) > 100:
        out.append(f"[{len(references) - 100} more reference(s) not shown]")
    return "\n".join([*out, *clock.note()])


def _python_definitions(ws: Workspace, path: str, lines: Sequence[str], name: str) -> set[int]:
    """Lines where ``name`` is defined (def, class, assignment) in Python source, from the
    file's definition index (built once per file from ``ast``)."""
    index = ws.definitions.get(path)
    if index is None:
        index = ws.definitions[path] = _python_index(lines)
    if index is _UNPARSED:
        pattern = re.compile(_DEFINITION.format(name=re.escape(name)))
        return {n for n, line in enumerate(lines, 1) if pattern.search(line)}
    return set(index.get(name, ()))


_UNPARSED: dict[str, set[int]] = {}


def _python_index(lines: Sequence[str]) -> dict[str, set[int]]:
    try:
        tree = ast.parse("\n".join(lines))
    except (SyntaxError, ValueError):
        return _UNPARSED
    index: dict[str, set[int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            index.setdefault(node.name, set()).add(node.lineno)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    index.setdefault(target.id, set()).add(node.lineno)
    return index


def list_folder(ws: Workspace, arguments: Mapping[str, Any]) -> str:
    folder = check_path(ws, arguments.get("path", "."), folder=True)
    prefix = "" if folder == "." else folder + "/"
    files: list[str] = []
    folders: dict[str, int] = {}
    hidden = 0
    for path in sorted(ws.files):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        if "/" in rest:
            head = rest.split("/", 1)[0]
            folders[head] = folders.get(head, 0) + 1
        elif ws.secret(path):
            hidden += 1
        else:
            files.append(prefix + rest)
    out = [f"{folder}: {len(folders)} folder(s), {len(files)} file(s)"]
    out.extend(f"{prefix}{name}/ ({count} files)" for name, count in folders.items())
    out.extend(files)
    if hidden:
        out.append(f"[{hidden} secret-looking file(s) not shown]")
    return "\n".join(out)


class _Deadline:
    """Stops a scan of many files after :data:`SCAN_SECONDS`, so a search of a huge
    repository answers in time; the result then says how far it got."""

    def __init__(self, files: int) -> None:
        self._end = time.monotonic() + SCAN_SECONDS
        self._files = files
        self._seen = 0
        self._stopped = False

    def expired(self) -> bool:
        if time.monotonic() > self._end:
            self._stopped = True
            return True
        self._seen += 1
        return False

    def note(self) -> list[str]:
        if not self._stopped:
            return []
        return [
            f"[stopped after {SCAN_SECONDS:g} s: {self._seen} of {self._files} files "
            "searched; give a path to narrow the search]"
        ]


def _clip(line: str, limit: int = 200) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


_TOOLS: Mapping[str, Callable[[Workspace, Mapping[str, Any]], str]] = {
    SEARCH: search_code,
    OPEN: open_file,
    SYMBOL: find_symbol,
    LIST: list_folder,
}
