"""``replay:<path>``: answer from a recorded transcript, so Keel runs offline and tests are exact.

The bundled demo, the test suite and benchmarks drive the real engine with a transcript
instead of a live model. A transcript is JSON Lines, one object per line:

- Blank lines are skipped.
- A line with the key ``"keel_transcript"`` is a metadata header and skipped, e.g.
  ``{"keel_transcript": 1, "task": "Create a Python calculator package", "note": "..."}``.
- Every other line is one reply::

      {"tier": "actuator", "node": "node-2", "attempt": 1,
       "reply": {"writes": [{"path": "src/calc/core.py", "content": "..."}]},
       "usage": {"input_tokens": 1200, "output_tokens": 350},
       "model": "openai:gpt-4.1", "delay_s": 0.8}

  ``tier`` (required) is ``architect``, ``actuator``, ``verifier`` or ``speculator``.
  ``node`` is the node id, or ``null`` (or absent) for requests about no node, such as the
  architect's plan. ``attempt`` (required) is the 1-based attempt number.
  Exactly one of ``reply`` (any JSON value; the reply text is its JSON serialisation) and
  ``text`` (a string returned verbatim, to record malformed replies) is required.
  ``usage`` (optional) has ``input_tokens`` and ``output_tokens`` (each optional, default 0).
  ``model`` (optional) is the ``PROVIDER:MODEL`` that originally answered; cost is computed
  from the price table for it, and without it the reply costs 0 and is reported unpriced.
  ``delay_s`` (optional, default 0) is the recorded latency, reproduced with a sleep.
  ``note`` (optional) is free text for people reading the file. Other keys are errors, so
  that a misspelt key is caught rather than ignored.

Exploration turns (the architect's read-only tool calls) are lines with ``"turn": N`` and
``"tool_calls": [{"name": ..., "arguments": {...}}]`` instead of ``reply``/``text``; the line
without a ``turn`` is the answer, for whichever turn asks for it (:func:`select_entry`).

A request is answered by the line whose (tier, node, attempt) equals the request's; two lines
with the same key (and turn) are an error. A request with no matching line fails with a
non-retryable :class:`ProviderError`. A malformed file is a :class:`ConfigError` naming the
file and line. The same entries drive the fake HTTP model server in the tests.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.engine.models import Tier
from keel.engine.ports import ConfigError, ModelRequest, ProviderError, ToolCall
from keel.providers.base import ProviderSettings, RawReply, RetryingClient
from keel.providers.prices import price

#: (tier, node, attempt): what a request and a transcript line are matched by.
ReplyKey = tuple[str, str | None, int]
#: A reply key and the turn (``None``: the answer, whatever turn asks for it).
EntryKey = tuple[str, str | None, int, int | None]

_ENTRY_KEYS = frozenset(
    {
        "tier",
        "node",
        "attempt",
        "turn",
        "reply",
        "text",
        "tool_calls",
        "usage",
        "model",
        "delay_s",
        "note",
    }
)


class TranscriptError(ValueError):
    """One transcript line is malformed; the caller adds the file and line number."""


@dataclass(frozen=True)
class TranscriptEntry:
    """One recorded reply. ``reply`` is the JSON value, or ``None`` when ``raw`` is set."""

    tier: Tier
    node: str | None
    attempt: int
    text: str
    raw: bool
    reply: Any = None
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    delay_s: float = 0.0
    turn: int | None = None
    #: Exploration tool calls (name, arguments) this turn makes instead of answering.
    tool_calls: tuple[tuple[str, Mapping[str, Any]], ...] = ()

    @property
    def key(self) -> ReplyKey:
        return (self.tier.value, self.node, self.attempt)

    @property
    def entry_key(self) -> EntryKey:
        return (self.tier.value, self.node, self.attempt, self.turn)

    def calls(self, prefix: str) -> tuple[ToolCall, ...]:
        """The tool calls with ids ``{prefix}_{n}`` (providers' ids are opaque too)."""
        return tuple(
            ToolCall(id=f"{prefix}_{n}", name=name, arguments=arguments)
            for n, (name, arguments) in enumerate(self.tool_calls, start=1)
        )


def select_entry(
    entries: Mapping[EntryKey, TranscriptEntry], key: ReplyKey, turn: int, must_answer: bool
) -> TranscriptEntry | None:
    """The entry answering turn ``turn`` of ``key``: the one recorded for that turn, else the
    answer (no ``turn``). A request that must answer (its exploration budget is spent) gets
    the answer even when a tool-calling entry was recorded for its turn, as a real model
    offered no tools would."""
    tier, node, attempt = key
    exact = entries.get((tier, node, attempt, turn))
    if exact is not None and not (must_answer and exact.tool_calls):
        return exact
    return entries.get((tier, node, attempt, None))


def describe_key(key: ReplyKey) -> str:
    """``actuator node-3 attempt 2`` (or ``architect attempt 1`` without a node)."""
    tier, node, attempt = key
    return f"{tier} {node} attempt {attempt}" if node else f"{tier} attempt {attempt}"


def request_key(request: ModelRequest) -> ReplyKey:
    return (request.tier.value, request.node_id, request.attempt)


def parse_entry(obj: object) -> TranscriptEntry | None:
    """The entry a decoded transcript line holds, ``None`` for a header; raises TranscriptError."""
    if not isinstance(obj, Mapping):
        raise TranscriptError("expected a JSON object")
    if "keel_transcript" in obj:
        return None
    unknown = sorted(set(obj) - _ENTRY_KEYS)
    if unknown:
        raise TranscriptError(f"unknown key(s) {', '.join(unknown)}")
    calls = _tool_calls_of(obj.get("tool_calls"))
    turn = _turn_of(obj.get("turn"))
    if calls:
        if "reply" in obj or "text" in obj:
            raise TranscriptError('"tool_calls" and "reply"/"text" exclude each other')
        if turn is None:
            raise TranscriptError('an entry with "tool_calls" needs its "turn"')
        text, raw, reply = "", False, None
    else:
        text, raw, reply = _reply_of(obj)
    input_tokens, output_tokens = _usage_of(obj.get("usage"))
    return TranscriptEntry(
        turn=turn,
        tool_calls=calls,
        tier=_tier_of(obj.get("tier")),
        node=_node_of(obj.get("node")),
        attempt=_attempt_of(obj.get("attempt")),
        text=text,
        raw=raw,
        reply=reply,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        model=_model_of(obj.get("model")),
        delay_s=_delay_of(obj.get("delay_s", 0)),
    )


def index_entries(entries: Iterable[object], source: str) -> dict[EntryKey, TranscriptEntry]:
    """Entries (decoded objects) by key; ConfigError naming ``source`` and the 1-based item."""
    out: dict[EntryKey, TranscriptEntry] = {}
    first_seen: dict[EntryKey, str] = {}
    for number, obj in enumerate(entries, start=1):
        _add(out, first_seen, obj, f"{source} entry {number}")
    return out


def load_transcript(path: Path, shown: str) -> dict[EntryKey, TranscriptEntry]:
    """Read and index a JSON Lines transcript; ``shown`` is the path as the user wrote it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read transcript {shown}: {exc}") from exc
    out: dict[EntryKey, TranscriptEntry] = {}
    first_seen: dict[EntryKey, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"transcript {shown} line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: invalid JSON ({exc.msg})") from exc
        _add(out, first_seen, obj, where)
    return out


def _add(
    out: dict[EntryKey, TranscriptEntry],
    first_seen: dict[EntryKey, str],
    obj: object,
    where: str,
) -> None:
    try:
        entry = parse_entry(obj)
    except TranscriptError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if entry is None:
        return
    key = entry.entry_key
    if key in out:
        turn = "" if entry.turn is None else f" turn {entry.turn}"
        raise ConfigError(
            f"{where}: a second reply for {describe_key(entry.key)}{turn} "
            f"(the first is at {first_seen[key]})"
        )
    out[key] = entry
    first_seen[key] = where


class ReplayClient(RetryingClient):
    """Answers requests from a transcript file, loaded once at construction."""

    def __init__(self, path: str, settings: ProviderSettings) -> None:
        super().__init__(f"replay:{path}", settings)
        self._shown = path
        resolved = Path(path).expanduser()
        if not resolved.exists():
            raise ConfigError(f"transcript {path} does not exist (from replay:{path})")
        if not resolved.is_file():
            raise ConfigError(f"transcript {path} is not a file (from replay:{path})")
        self._entries = load_transcript(resolved, path)

    @property
    def entries(self) -> Mapping[EntryKey, TranscriptEntry]:
        return self._entries

    def _entry(self, request: ModelRequest) -> TranscriptEntry | None:
        return select_entry(
            self._entries,
            request_key(request),
            request.turn,
            request.must_answer or not request.tools,
        )

    def estimate_cost(self, request: ModelRequest) -> float:
        """Exact: what the recorded reply costs (its model and usage); 0 without one."""
        entry = self._entry(request)
        if entry is None:
            return 0.0
        model = entry.model or self.name
        usage = price(model, entry.input_tokens, entry.output_tokens, self._settings.prices)
        return usage.cost_usd

    async def _attempt(self, request: ModelRequest) -> RawReply:
        key = request_key(request)
        entry = self._entry(request)
        if entry is None:
            turn = f" turn {request.turn}" if request.turn > 1 else ""
            raise ProviderError(
                f"transcript {self._shown} has no reply for {describe_key(key)}{turn}"
            )
        if entry.delay_s > 0:
            await asyncio.sleep(entry.delay_s)
        return RawReply(
            text=entry.text,
            model=entry.model or self.name,
            input_tokens=entry.input_tokens,
            output_tokens=entry.output_tokens,
            tool_calls=entry.calls(f"call_{request.turn}"),
        )


def _reply_of(obj: Mapping[str, Any]) -> tuple[str, bool, Any]:
    has_reply, has_text = "reply" in obj, "text" in obj
    if has_reply == has_text:
        raise TranscriptError('needs exactly one of "reply" and "text"')
    if has_text:
        text = obj["text"]
        if not isinstance(text, str):
            raise TranscriptError('"text" must be a string')
        return text, True, None
    return json.dumps(obj["reply"]), False, obj["reply"]


def _turn_of(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TranscriptError(f'"turn" must be an integer >= 1, not {value!r}')
    return value


def _tool_calls_of(value: object) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise TranscriptError('"tool_calls" must be a non-empty list')
    calls = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise TranscriptError('each of "tool_calls" needs a "name" string')
        arguments = item.get("arguments", {})
        if not isinstance(arguments, Mapping):
            raise TranscriptError('"arguments" of a tool call must be an object')
        extra = sorted(set(item) - {"name", "arguments"})
        if extra:
            raise TranscriptError(f"unknown key(s) {', '.join(extra)} in a tool call")
        calls.append((str(item["name"]), dict(arguments)))
    return tuple(calls)


def _tier_of(value: object) -> Tier:
    if value is None:
        raise TranscriptError('missing "tier"')
    if not isinstance(value, str):
        raise TranscriptError(f'"tier" must be a string, not {value!r}')
    try:
        return Tier(value)
    except ValueError:
        valid = ", ".join(t.value for t in Tier)
        raise TranscriptError(f'"tier" must be one of {valid}, not {value!r}') from None


def _node_of(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value:
        return value
    raise TranscriptError('"node" must be a node id or null')


def _attempt_of(value: object) -> int:
    if value is None:
        raise TranscriptError('missing "attempt"')
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TranscriptError(f'"attempt" must be an integer >= 1, not {value!r}')
    return value


def _usage_of(value: object) -> tuple[int, int]:
    if value is None:
        return 0, 0
    if not isinstance(value, Mapping):
        raise TranscriptError('"usage" must be an object')
    return _count(value, "input_tokens"), _count(value, "output_tokens")


def _count(usage: Mapping[str, Any], name: str) -> int:
    value = usage.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TranscriptError(f'"usage.{name}" must be a non-negative integer')
    return value


def _model_of(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise TranscriptError('"model" must be a string')


def _delay_of(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TranscriptError(f'"delay_s" must be a number >= 0, not {value!r}')
    delay = float(value)
    if not math.isfinite(delay) or delay < 0:
        raise TranscriptError(f'"delay_s" must be a number >= 0, not {value!r}')
    return delay
