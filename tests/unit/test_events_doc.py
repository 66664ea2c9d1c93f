"""docs/reference/events.md is the contract of ``keel agent --json``: its table of event types
must list every record of ``keel.engine.events`` with exactly the record's keys.

The table's convention: a row's second cell names the keys in backticks; what is in
parentheses explains them (values, nested keys) and is not a key; "the same keys as `x`"
repeats another row's keys.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from keel.engine import events as ev

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "events.md"
_ROW = re.compile(r"^\| `(?P<type>[a-z_]+)` \| (?P<keys>.*) \|$")
_KEY = re.compile(r"`([a-z_]+)`")
_SAME = re.compile(r"^the same keys as `([a-z_]+)`")


def _outside_parentheses(text: str) -> str:
    """``text`` without its parenthesised parts (nested ones too)."""
    out, depth = [], 0
    for char in text:
        depth += char == "("
        if depth == 0:
            out.append(char)
        depth -= char == ")" and depth > 0
    return "".join(out)


def _after(text: str, key: str) -> str:
    """The parenthesised explanation right after `key` in ``text``, or ""."""
    start = text.find(f"`{key}` (")
    if start < 0:
        return ""
    depth, begin = 0, start + len(key) + 3
    for i in range(begin, len(text)):
        depth += text[i] == "("
        depth -= text[i] == ")"
        if depth == 0:
            return text[begin : i + 1]
    return text[begin:]


def documented(text: str) -> dict[str, tuple[list[str], str]]:
    """Per event type of the table: its keys in order and the cell's text."""
    rows: dict[str, tuple[list[str], str]] = {}
    for line in text.splitlines():
        match = _ROW.match(line)
        if match is None or match["type"] in ("ts", "session", "type"):
            continue
        cell = match["keys"]
        same = _SAME.match(cell)
        keys = rows[same[1]][0] if same else _KEY.findall(_outside_parentheses(cell))
        assert match["type"] not in rows, f"{match['type']} is in the table twice"
        rows[match["type"]] = (keys, cell)
    return rows


def _nested(cls: type[ev.Event], name: str) -> list[str]:
    """The keys of a record nested in field ``name`` (``plan_ready``'s nodes, the totals)."""
    hint = typing.get_type_hints(cls)[name]
    inner = typing.get_args(hint)[0] if typing.get_args(hint) else hint
    if isinstance(inner, type) and dataclasses.is_dataclass(inner):
        return [f.name for f in dataclasses.fields(inner)]
    return []


def test_the_table_lists_every_record_and_nothing_else() -> None:
    rows = documented(DOC.read_text())
    assert sorted(rows) == sorted(kind.value for kind in ev.EventKind)


def test_every_key_of_every_record_is_documented_in_order() -> None:
    rows = documented(DOC.read_text())
    for kind, cls in ev.RECORDS.items():
        keys, cell = rows[kind.value]
        assert keys == ev.json_keys(cls), f"{kind}: the table says {keys}"
        for key in keys:
            inner = _nested(cls, key)
            explained = set(re.findall(r"[a-z_]+", _after(cell, key)))
            missing = [name for name in inner if name not in explained]
            assert not missing, f"{kind}.{key}: the table does not name {missing}"


def test_the_common_keys_are_documented() -> None:
    text = DOC.read_text()
    first = text[text.index("| key | meaning |") : text.index("| type | extra keys |")]
    assert _KEY.findall(_outside_parentheses(first)) == ["ts", "session", "type"]


def test_the_parser_sees_what_a_stale_table_would_hide() -> None:
    """The checks above would fail on a table that lost a key or gained one."""
    text = DOC.read_text()
    lost = text.replace("| `node_retrying` | `node`, `attempt` (the next one), `v` |", "")
    assert "node_retrying" not in documented(lost)
    gained = text.replace("`attempt` (the next one), `v` |", "`attempt`, `v`, `eta` |")
    assert documented(gained)["node_retrying"][0] == ["node", "attempt", "v", "eta"]
    assert documented(text)["session_resumed"][0] == documented(text)["session_started"][0]
