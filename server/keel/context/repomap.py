"""The ranked repository map: the workspace's code as outlines, chosen for a task, bounded.

Every Python file's definitions and references (``outline.py``, cached by content key in
``parses.json``) make a graph in which a file points at the files defining the names it uses.
Personalised PageRank (networkx) over that graph, seeded by the identifiers and paths the task
mentions, the files the editor is on and the recently changed files, ranks the files and, by
the rank flowing along each name, the definitions in them. The map is rendered in tiers within
the token budget (tokens = characters / 4): outlines (``line│signature``) for the best files,
one-line summaries for the next, then the remaining paths, then a count per folder, so what is
left out is always named. See docs/explanation/context.md.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.context.inventory import Inventory
from keel.context.outline import Definition, Facts, module_name, outlinable, python_facts
from keel.engine.ports import RepoMap

log = logging.getLogger(__name__)

PARSE_CACHE = "parses.json"
PARSE_CACHE_VERSION = 1
RECENT_COMMITS = 30
OUTLINE_SHARE = 0.72  # of the budget, for full outlines; the rest for summaries and paths
SUMMARY_SHARE = 0.93  # outlines plus one-line summaries stop here; paths fill the rest
SUMMARY_DEFS = 3
DEF_DECAY = 0.62  # each further definition of a file is worth this much of the one before

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FLAG = re.compile(r"(?<![\w-])--?([A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+|[A-Za-z][A-Za-z0-9]+)")
PATHLIKE = re.compile(r"[\w./-]+")


def tokens(text: str) -> int:
    return len(text) // 4


@dataclass
class _Index:
    inventory: Inventory
    facts: dict[str, Facts]
    defines: dict[str, list[str]]
    modules: dict[str, str]
    graph: Any = None  # built once, on the first ranking
    flows: list[tuple[str, str, str, float]] | None = None
    out: dict[str, float] | None = None


class RepositoryMap:
    """``RepositoryContext`` for one workspace (``keel.app`` builds it)."""

    def __init__(
        self, root: Path, *, cache_dir: Path | None = None, cache_only_if: Path | None = None
    ) -> None:
        """``cache_dir`` keeps the inventory and parses; with ``cache_only_if``, only while
        that folder exists (so reading the map never creates a workspace's ``.keel/``)."""
        self.root = root
        self._cache_dir = cache_dir
        self._cache_only_if = cache_only_if
        self._index: _Index | None = None

    @property
    def cache_dir(self) -> Path | None:
        if self._cache_only_if is not None and not self._cache_only_if.is_dir():
            return None
        return self._cache_dir

    async def render_map(
        self, task: str, *, focus: Sequence[str] = (), budget_tokens: int
    ) -> RepoMap:
        index = await self.index()
        recent = await self._recent(index.inventory)
        return await asyncio.to_thread(_render, index, task, list(focus), recent, budget_tokens)

    async def related_definitions(self, paths: Sequence[str], *, budget_tokens: int) -> str:
        index = await self.index()
        return await asyncio.to_thread(_related, index, list(paths), budget_tokens)

    async def index(self) -> _Index:
        cache_dir = await asyncio.to_thread(lambda: self.cache_dir)
        inventory = await Inventory.load(self.root, cache_dir)
        previous = self._index
        if previous is not None and previous.inventory.keys == inventory.keys:
            return previous
        self._index = await asyncio.to_thread(_build_index, inventory, cache_dir)
        return self._index

    async def _recent(self, inventory: Inventory) -> list[str]:
        """Files the last commits touched, newest first (empty outside git)."""
        if not inventory.git:
            return []
        try:
            proc = await asyncio.create_subprocess_exec(
                "git",
                "-C",
                str(inventory.root),
                "log",
                f"-n{RECENT_COMMITS}",
                "--no-merges",
                "--name-only",
                "--relative",
                "--format=",
                "-z",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError:
            return []
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            return []
        seen: dict[str, None] = {}
        for raw in out.decode("utf-8", "surrogateescape").replace("\n", "\0").split("\0"):
            if raw and raw in inventory:
                seen.setdefault(raw, None)
        return list(seen)


def _build_index(inventory: Inventory, cache_dir: Path | None) -> _Index:
    cached = _read_parses(cache_dir)
    facts: dict[str, Facts] = {}
    fresh: dict[str, list[Any]] = {}
    changed = False
    for path in inventory.files:
        if not outlinable(path):
            continue
        key = inventory.content_key(path) or ""
        hit = cached.get(path)
        parsed: Facts | None = None
        if isinstance(hit, list) and len(hit) == 2 and hit[0] == key:
            try:
                parsed = Facts.from_json(hit[1])
                fresh[path] = hit
            except (TypeError, ValueError):
                parsed = None
        if parsed is None:
            try:
                source = (inventory.root / path).read_text(errors="replace")
            except OSError:
                continue
            parsed = python_facts(source, module_name(path))
            fresh[path] = [key, parsed.to_json()]
            changed = True
        facts[path] = parsed
    if changed or len(fresh) != len(cached):
        _write_parses(cache_dir, fresh)
    defines: dict[str, list[str]] = defaultdict(list)
    for path, fact in facts.items():
        for name in {d.name for d in fact.defs}:
            defines[name].append(path)
    modules: dict[str, str] = {}
    for path in sorted(facts, key=lambda p: (p.count("/"), p)):
        parts = module_name(path).split(".")
        for start in range(len(parts)):
            modules.setdefault(".".join(parts[start:]), path)
    return _Index(inventory, facts, dict(defines), modules)


def _read_parses(cache_dir: Path | None) -> dict[str, Any]:
    if cache_dir is None:
        return {}
    try:
        data = json.loads((cache_dir / PARSE_CACHE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != PARSE_CACHE_VERSION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _write_parses(cache_dir: Path | None, files: Mapping[str, Any]) -> None:
    if cache_dir is None:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f".{PARSE_CACHE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"version": PARSE_CACHE_VERSION, "files": files}))
        os.replace(tmp, cache_dir / PARSE_CACHE)
    except OSError as exc:
        log.warning("repository map cache not written: %s", exc)


# -- ranking -------------------------------------------------------------------------------


@dataclass
class _Ranking:
    files: list[str]  # every inventory file, best first
    defs: dict[str, list[Definition]]  # per file, best first
    mentioned: set[str]


def _task_words(task: str) -> tuple[set[str], set[str]]:
    """Identifiers the task mentions (with ``--some-flag`` as ``some_flag``), and the
    lower-cased words, path pieces and dotted pieces, to match file names."""
    idents = set(IDENT.findall(task))
    idents.update(m.replace("-", "_") for m in FLAG.findall(task))
    words = {w.lower() for w in idents}
    for piece in PATHLIKE.findall(task):
        words.add(piece.strip("./").lower())
    return idents, words


def _mul(ident: str, definers: int) -> float:
    mul = 1.0
    if len(ident) >= 8 and ("_" in ident.strip("_") or ident[1:] != ident[1:].lower()):
        mul *= 3.0
    if ident.startswith("_"):
        mul *= 0.1
    if definers > 5:
        mul *= 0.1
    return mul


def _graph(index: _Index) -> tuple[Any, list[tuple[str, str, str, float]], dict[str, float]]:
    """Which file uses which file's names (task-independent, so built once per index)."""
    if index.graph is not None and index.flows is not None and index.out is not None:
        return index.graph, index.flows, index.out
    import networkx as nx  # lazily: only the map needs it

    weights: dict[tuple[str, str], float] = defaultdict(float)
    flows: list[tuple[str, str, str, float]] = []
    for source, fact in index.facts.items():
        for ident, count in fact.refs.items():
            definers = index.defines.get(ident)
            if not definers:
                continue
            weight = _mul(ident, len(definers)) * math.sqrt(count)
            for target in definers:
                if target != source:
                    weights[source, target] += weight
                    flows.append((source, target, ident, weight))
        for module in fact.imports:
            imported = index.modules.get(module)
            if imported is not None and imported != source:
                weights[source, imported] += 0.5
    graph = nx.DiGraph()
    graph.add_nodes_from(index.inventory.files)
    graph.add_weighted_edges_from((s, t, w) for (s, t), w in weights.items())
    out: dict[str, float] = defaultdict(float)
    for (s, _t), w in weights.items():
        out[s] += w
    index.graph, index.flows, index.out = graph, flows, dict(out)
    return graph, flows, index.out


def _rank(index: _Index, task: str, focus: Sequence[str], recent: Sequence[str]) -> _Ranking:
    import networkx as nx  # lazily: only the map needs it

    idents, words = _task_words(task)
    mentioned = {i for i in idents if i in index.defines and len(i) >= 3}
    files = list(index.inventory.files)
    personal: dict[str, float] = defaultdict(float)
    for ident in mentioned:
        definers = index.defines[ident]
        for path in definers:
            personal[path] += 1.0 / len(definers)
    lowered_task = task.lower()
    for path in files:
        stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
        if path.lower() in words or (len(path) > 6 and path.lower() in lowered_task):
            personal[path] += 3.0
        elif outlinable(path) and module_name(path).lower() in words:
            personal[path] += 2.0
        elif (
            len(stem) >= 4
            and stem not in ("__init__", "main", "utils", "util")
            and (stem in words or stem.replace("_", " ") in lowered_task)
        ):
            personal[path] += 0.5
    for position, path in enumerate(recent):
        personal[path] += 0.3 / (1 + position / 10)
    total = sum(personal.values()) or 1.0
    for path in focus:
        if path in index.inventory:
            personal[path] += 10.0 * total

    graph, flows, out = _graph(index)
    seed = {p: v for p, v in personal.items() if v > 0} or None
    try:
        rank: dict[str, float] = dict(nx.pagerank(graph, weight="weight", personalization=seed))
    except (nx.PowerIterationFailedConvergence, ZeroDivisionError):
        rank = {p: 1.0 / max(1, len(files)) for p in files}
    # PageRank puts no mass on unreachable files; the seed still orders them.
    score = {p: rank.get(p, 0.0) + 1e-3 * personal.get(p, 0.0) for p in files}
    for path in focus:
        if path in score:
            score[path] += 10.0

    def_rank: dict[tuple[str, str], float] = defaultdict(float)
    for source, target, ident, weight in flows:
        def_rank[target, ident] += rank.get(source, 0.0) * weight / (out.get(source) or 1.0)

    defs: dict[str, list[Definition]] = {}
    for path, fact in index.facts.items():
        if not fact.defs:
            continue

        def priority(d: Definition, path: str = path) -> tuple[float, ...]:
            public = not d.name.startswith("_") or d.name == "__init__"
            return (
                float(d.name in mentioned),
                def_rank.get((path, d.name), 0.0),
                float(public),
                -float(d.depth),
                -float(d.line),
            )

        defs[path] = sorted(fact.defs, key=priority, reverse=True)
    ordered = sorted(files, key=lambda p: (-score[p], not outlinable(p), p))
    return _Ranking(ordered, defs, mentioned)


# -- rendering -----------------------------------------------------------------------------


def _def_line(d: Definition) -> str:
    return f"{d.line:>5}│{'    ' * d.depth}{d.text}"


def _parents(defs: Iterable[Definition]) -> dict[int, Definition]:
    """Each nested definition's enclosing class, by line."""
    stack: list[Definition] = []
    parents: dict[int, Definition] = {}
    for d in sorted(defs, key=lambda d: d.line):
        while stack and stack[-1].depth >= d.depth:
            stack.pop()
        if stack and d.depth > 0:
            parents[d.line] = stack[-1]
        if d.kind == "class":
            stack.append(d)
    return parents


def _folder(path: str) -> str:
    parts = path.split("/")
    return (
        "/".join(parts[:2]) + "/"
        if len(parts) > 2
        else (parts[0] + "/" if len(parts) > 1 else "./")
    )


def _render(
    index: _Index, task: str, focus: list[str], recent: list[str], budget_tokens: int
) -> RepoMap:
    ranking = _rank(index, task, focus, recent)
    budget = max(0, budget_tokens) * 4  # in characters
    header = (
        "Repository map (files ranked for the task, most relevant first; "
        "outlines show `line│signature`):"
    )
    used = len(header) + 1

    # Tier 1: outlines, definition by definition, the best files' best definitions first.
    chosen: dict[str, set[int]] = defaultdict(set)  # path -> lines
    heap: list[tuple[float, int, str, int]] = []
    order = {p: i for i, p in enumerate(ranking.files)}
    for path in ranking.files[:400]:
        if ranking.defs.get(path):
            heapq.heappush(heap, (-_file_weight(ranking, order[path]), order[path], path, 0))
    parents = {p: _parents(ds) for p, ds in ranking.defs.items()}
    limit = budget * OUTLINE_SHARE
    while heap:
        neg, position, path, k = heapq.heappop(heap)
        defs = ranking.defs[path]
        d = defs[k]
        add = [d] if d.line not in chosen[path] else []
        parent = parents[path].get(d.line)
        while parent is not None and parent.line not in chosen[path]:
            add.append(parent)
            parent = parents[path].get(parent.line)
        cost = sum(len(_def_line(x)) + 1 for x in add)
        if not chosen[path]:
            cost += len(path) + 2 + 24  # the path line and a "more definitions" line
        if add and used + cost > limit:
            if not chosen[path]:
                continue  # this file does not fit; smaller ones still may
            continue
        used += cost
        chosen[path].update(x.line for x in add)
        if k + 1 < len(defs):
            bonus = 1.0 if defs[k + 1].name in ranking.mentioned else DEF_DECAY
            heapq.heappush(heap, (neg * bonus, position, path, k + 1))

    included = [p for p in ranking.files if chosen.get(p)]
    outline_lines: list[str] = []
    for path in included:
        outline_lines.append(f"{path}:")
        by_line = {d.line: d for d in ranking.defs[path]}
        outline_lines.extend(_def_line(by_line[line]) for line in sorted(chosen[path]))
        more = len(ranking.defs[path]) - len(chosen[path])
        if more:
            outline_lines.append(f"      ⋮ {more} more definition{'s' if more > 1 else ''}")
    used = len(header) + 1 + sum(len(x) + 1 for x in outline_lines)

    rest = [p for p in ranking.files if p not in chosen or not chosen[p]]
    trailer_reserve = 60 + 24 * min(12, len({_folder(p) for p in rest}))

    # Tier 2: one line per file: the path and its best definitions.
    summarised: list[str] = []
    summary_lines: list[str] = []
    limit = max(used, budget * SUMMARY_SHARE - trailer_reserve)
    for path in rest:
        defs = ranking.defs.get(path, [])
        if not defs:
            continue
        names = ", ".join(f"{d.kind} {d.name}" for d in defs[:SUMMARY_DEFS])
        more = len(defs) - SUMMARY_DEFS
        line = f"{path}: {names}" + (f", +{more} more" if more > 0 else "")
        if used + len(line) + 1 > limit:
            break
        summary_lines.append(line)
        summarised.append(path)
        used += len(line) + 1

    # Tier 3: bare paths, then a count per folder for whatever is still left.
    shown = set(summarised)
    left = [p for p in rest if p not in shown]
    path_lines: list[str] = []
    limit = budget - trailer_reserve
    listed: set[str] = set()
    for path in left:
        if used + len(path) + 1 > limit:
            break
        path_lines.append(path)
        listed.add(path)
        used += len(path) + 1
    omitted = [p for p in left if p not in listed]

    parts = [header]
    if outline_lines:
        parts += outline_lines
    if summary_lines:
        parts += ["", "More files (best definitions):", *summary_lines]
    if path_lines:
        parts += ["", "Other files:", *path_lines]
    if omitted:
        folders = Counter(_folder(p) for p in omitted)
        listed_folders = folders.most_common(12)
        counts = ", ".join(f"{f} ({n})" for f, n in listed_folders)
        extra = len(folders) - len(listed_folders)
        tail = f", and {extra} more folders" if extra > 0 else ""
        parts += ["", f"Not shown, for the budget: {len(omitted)} files in {counts}{tail}."]
    if not ranking.files:
        parts += ["  (empty workspace)"]
    text = "\n".join(parts)
    return RepoMap(
        text=text,
        included=tuple(included),
        omitted=tuple(omitted),
        tokens=tokens(text),
        summarised=tuple(summarised),
    )


def _file_weight(ranking: _Ranking, position: int) -> float:
    """A file's share of the outline budget falls with its place in the ranking."""
    return float(1.0 / (1.0 + position) ** 0.8)


def _related(index: _Index, paths: list[str], budget_tokens: int) -> str:
    """Outlines of the definitions ``paths`` use from other files, most used first."""
    wanted = [p for p in paths if p in index.facts]
    uses: Counter[tuple[str, str]] = Counter()
    for path in wanted:
        for ident, count in index.facts[path].refs.items():
            definers = index.defines.get(ident, [])
            if len(definers) > 3:
                continue  # too common a name to say which one is meant
            for target in definers:
                if target not in wanted:
                    uses[target, ident] += count
    if not uses:
        return ""
    budget = max(0, budget_tokens) * 4
    chosen: dict[str, list[Definition]] = defaultdict(list)
    used = 0
    skipped = 0
    for (target, ident), _count in uses.most_common():
        for d in index.facts[target].defs:
            if d.name != ident:
                continue
            cost = len(_def_line(d)) + 1 + (0 if chosen[target] else len(target) + 2)
            if used + cost > budget - 80:
                skipped += 1
                continue
            chosen[target].append(d)
            used += cost
    lines: list[str] = []
    for target, defs in chosen.items():
        if not defs:
            continue
        lines.append(f"{target}:")
        lines.extend(_def_line(d) for d in sorted(defs, key=lambda d: d.line))
    if skipped:
        lines.append(f"(and {skipped} more definitions used, not shown for the budget)")
    return "\n".join(lines)
