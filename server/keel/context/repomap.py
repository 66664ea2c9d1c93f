"""The ranked repository map: the workspace's code as outlines, chosen for a task, bounded.

Every Python file's definitions and references (``outline.py``, cached by content key in
``parses.json``) make a graph in which a file points at the files defining the names it uses.
Personalised PageRank (a numpy power iteration) over that graph, seeded by the identifiers and
paths the task mentions, the files the editor is on and the recently changed files, ranks the
files and, by the rank flowing along each name, the definitions in them. The map is rendered
in tiers within the token budget (tokens = characters / 4): outlines (``line│signature``) for
the best files, one-line summaries for the next, then the remaining paths, then a count per
folder, so what is left out is always named. A warm map reads one index cache
(``map-index.npz``: the graph, the name tables, the definitions) keyed by the inventory's
digest, not the parses. See docs/explanation/context.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import logging
import math
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from keel.context import cache
from keel.context.inventory import Inventory
from keel.context.outline import Definition, Facts, module_name, outlinable, python_facts
from keel.engine.ports import RepoMap

log = logging.getLogger(__name__)

PARSE_CACHE = "parses.json"
PARSE_CACHE_VERSION = 2
INDEX_CACHE = "map-index.npz"
INDEX_CACHE_VERSION = 1
RECENT_COMMITS = 30
OUTLINE_SHARE = 0.72  # of the budget, for full outlines; the rest for summaries and paths
SUMMARY_SHARE = 0.93  # outlines plus one-line summaries stop here; paths fill the rest
SUMMARY_DEFS = 3
DEF_DECAY = 0.62  # each further definition of a file is worth this much of the one before

SEED_CODE_IDENT = 3.0
SEED_WORD_IDENT = 1.0
SEED_PATH = 3.0
SEED_STEM = 1.0
SEED_DIR = 0.5
SEED_RECENT = 0.3
SEED_BOUND = 1.0
STEM_PIECE = 1.0
TEST_FACTOR = 0.3
SEED_BLEND = 2.0
GENERIC_STEMS = frozenset({"__init__", "__main__", "main", "utils", "util", "helpers", "common"})

BACKTICKS = re.compile(r"`([^`]+)`")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FLAG = re.compile(r"(?<![\w-])--?([A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+|[A-Za-z][A-Za-z0-9]+)")
PATHLIKE = re.compile(r"[\w./-]+")


def tokens(text: str) -> int:
    return len(text) // 4


@dataclass
class _Index:
    inventory: Inventory
    facts: Mapping[str, Facts]
    defines: Mapping[str, list[str]]
    binds: Mapping[str, list[str]]
    users: Mapping[str, int]  # how many files refer to each name
    graph: Any = None  # the _Graph, built once, on the first ranking
    complete: bool = True  # False when read from the index cache: no refs, imports, names

    @cached_property
    def modules(self) -> dict[str, str]:
        """Each dotted module name (and every dotted suffix of it) to the shallowest file."""
        modules: dict[str, str] = {}
        for path in sorted(self.facts, key=lambda p: (p.count("/"), p)):
            parts = module_name(path).split(".")
            for start in range(len(parts)):
                modules.setdefault(".".join(parts[start:]), path)
        return modules


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
        index, changed = await asyncio.gather(self.index(), self._recent())
        recent = [p for p in changed if p in index.inventory] if index.inventory.git else []
        return await asyncio.to_thread(_render, index, task, list(focus), recent, budget_tokens)

    async def related_definitions(self, paths: Sequence[str], *, budget_tokens: int) -> str:
        index = await self.index(complete=True)
        return await asyncio.to_thread(_related, index, list(paths), budget_tokens)

    async def index(self, *, complete: bool = False) -> _Index:
        """The workspace's index; ``complete`` also loads every file's references (the index
        cache, enough to rank and render, has only definitions)."""
        cache_dir = await asyncio.to_thread(lambda: self.cache_dir)
        inventory = await Inventory.load(self.root, cache_dir)
        previous = self._index
        if (
            previous is not None
            and previous.inventory.keys == inventory.keys
            and previous.inventory.files == inventory.files
            and (previous.complete or not complete)
        ):
            return previous
        self._index = await asyncio.to_thread(_load_index, inventory, cache_dir, complete)
        return self._index

    async def _recent(self) -> list[str]:
        """Files the last commits touched, newest first (empty outside git; asked while the
        index loads, so the caller keeps those still in the inventory)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                "git",
                "-C",
                str(self.root),
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
            if raw:
                seen.setdefault(raw, None)
        return list(seen)


def _load_index(inventory: Inventory, cache_dir: Path | None, complete: bool) -> _Index:
    """The index from the index cache when it was built from exactly these files and
    contents, else from the parses (and the index cache rewritten)."""
    digest = _digest(inventory)
    if not complete:
        cached = _read_index(cache_dir, inventory, digest)
        if cached is not None:
            return cached
    index = _build_index(inventory, cache_dir)
    if cache_dir is not None and not (complete and _stored_digest(cache_dir) == digest):
        _write_index(cache_dir, index, digest)
    return index


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
        for name in fact.def_names:
            defines[name].append(path)
    binds: dict[str, list[str]] = defaultdict(list)
    for path, fact in facts.items():
        for name in fact.names:
            binds[name].append(path)
    users: Counter[str] = Counter()
    for fact in facts.values():
        users.update(fact.refs.keys())
    return _Index(inventory, facts, dict(defines), dict(binds), dict(users))


# -- the index cache -------------------------------------------------------------------------
#
# What a warm map needs, in one file keyed by a digest of the inventory's paths and content
# keys: the graph's arrays, each parsed file's definitions (raw, built only when rendered) and
# the name tables the seed reads. Files' references stay in the parse cache: only
# ``related_definitions`` reads them.

_GRAPH_ARRAYS = ("src", "dst", "weight", "flow_src", "flow_key", "flow_weight")
_DAMAGED = (
    OSError,
    ValueError,  # also a member that would need pickle
    KeyError,
    EOFError,
    TypeError,
    IndexError,
    AttributeError,
    zipfile.BadZipFile,
)


def _digest(inventory: Inventory) -> str:
    h = hashlib.sha256(f"{INDEX_CACHE_VERSION}\0".encode())
    for path in inventory.files:
        h.update(
            f"{path}\0{inventory.content_key(path) or ''}\0".encode("utf-8", "surrogateescape")
        )
    return h.hexdigest()


def _stored_digest(cache_dir: Path) -> str | None:
    try:
        with _np_load(cache_dir / INDEX_CACHE) as data:
            return str(data["digest"])
    except _DAMAGED:
        return None


def _np_load(path: Path) -> Any:
    import numpy as np

    return np.load(path, allow_pickle=False)


class _CachedFacts(Mapping[str, Facts]):
    """The index cache's files, each one's definitions a slice of one JSON blob, made into
    ``Facts`` only when looked at (without references: ``related_definitions`` reads the
    parses)."""

    def __init__(self, paths: list[str], blob: bytes, offsets: list[int]) -> None:
        self._at = {p: i for i, p in enumerate(paths)}
        self._blob = blob
        self._offsets = offsets
        self._made: dict[str, Facts] = {}

    def __getitem__(self, path: str) -> Facts:
        made = self._made.get(path)
        if made is None:
            i = self._at[path]
            made = self._made[path] = Facts(raw=self._blob[self._offsets[i] : self._offsets[i + 1]])
        return made

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)


class _CachedRows(Mapping[str, list[str]]):
    """A cached ``name -> files`` table (files by their place in ``paths``), turned into
    paths only for the names looked up; a damaged row reads as empty."""

    def __init__(self, rows: dict[str, Any], paths: list[str]) -> None:
        self._rows = rows
        self._paths = paths

    def __getitem__(self, name: str) -> list[str]:
        row = self._rows[name]
        try:
            return [self._paths[i] for i in row if i >= 0]
        except (TypeError, IndexError):
            return []

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def _read_index(cache_dir: Path | None, inventory: Inventory, digest: str) -> _Index | None:
    """The cached index, or ``None`` when it is missing, stale, damaged or from another
    version (the caller then rebuilds it)."""
    if cache_dir is None:
        return None
    import numpy as np

    try:
        with _np_load(cache_dir / INDEX_CACHE) as data:
            if str(data["digest"]) != digest:
                return None
            tables = json.loads(data["tables"].tobytes())
            arrays = {name: data[name] for name in _GRAPH_ARRAYS}
            blob = data["defs"].tobytes()
            offsets = data["offsets"].tolist()
            tests = data["tests"]
        paths: list[str] = tables["paths"]
        files = list(inventory.files)
        n = len(files)
        src, dst, weight = arrays["src"], arrays["dst"], arrays["weight"]
        flow_src, flow_key, flow_weight = (arrays[k] for k in _GRAPH_ARRAYS[3:])
        keys = [(files[pos], str(name)) for pos, name in tables["keys"]]
        lengths = (
            {len(src), len(dst), len(weight)},
            {len(flow_src), len(flow_key), len(flow_weight)},
        )
        ints = (src, dst, flow_src, flow_key)
        if (
            len(offsets) != len(paths) + 1
            or offsets != sorted(offsets)
            or (offsets and (offsets[0] != 0 or offsets[-1] != len(blob)))
            or len(lengths[0]) != 1
            or len(lengths[1]) != 1
            or any(a.dtype != np.int64 or a.ndim != 1 for a in ints)
            or any(a.dtype != np.float64 or a.ndim != 1 for a in (weight, flow_weight))
            or any(len(a) and (int(a.min()) < 0 or int(a.max()) >= n) for a in ints[:3])
            or (len(flow_key) and (int(flow_key.min()) < 0 or int(flow_key.max()) >= len(keys)))
            or tests.dtype != np.bool_
            or tests.shape != (n,)
            or not all(p in inventory for p in paths)
            or not all(type(v) is int for v in tables["users"].values())
        ):
            return None
        facts = _CachedFacts(paths, blob, offsets)
        defines = _CachedRows(tables["defines"], paths)
        binds = _CachedRows(tables["binds"], paths)
        users: dict[str, int] = tables["users"]
    except _DAMAGED:
        return None
    index = _Index(inventory, facts, defines, binds, users, complete=False)
    graph = _new_graph(files, src, dst, weight, flow_src, flow_key, flow_weight, keys, tests)
    index.graph = graph
    return index


def _write_index(cache_dir: Path, index: _Index, digest: str) -> None:
    import numpy as np

    graph = _graph(index)
    paths = list(index.facts)
    at = {p: i for i, p in enumerate(paths)}
    defs = [
        json.dumps([[d.name, d.kind, d.line, d.depth, d.text] for d in f.defs]).encode()
        for f in index.facts.values()
    ]
    offsets = [0]
    for raw in defs:
        offsets.append(offsets[-1] + len(raw))
    tables = {
        "paths": paths,
        "defines": {k: [at[p] for p in v] for k, v in index.defines.items()},
        "binds": {k: [at[p] for p in v] for k, v in index.binds.items()},
        "users": index.users,
        "keys": [[graph.position[p], name] for p, name in graph.keys],
    }

    def write(handle: IO[bytes]) -> None:
        np.savez(
            handle,
            digest=np.array(digest),
            tables=np.frombuffer(json.dumps(tables).encode(), dtype=np.uint8),
            defs=np.frombuffer(b"".join(defs), dtype=np.uint8),
            offsets=np.asarray(offsets, dtype=np.int64),
            tests=graph.tests,
            **{name: getattr(graph, name) for name in _GRAPH_ARRAYS},
        )

    cache.write_atomic(cache_dir / INDEX_CACHE, write)


def _read_parses(cache_dir: Path | None) -> dict[str, Any]:
    if cache_dir is None:
        return {}
    return cache.read_files(cache_dir / PARSE_CACHE, PARSE_CACHE_VERSION)


def _write_parses(cache_dir: Path | None, files: Mapping[str, Any]) -> None:
    if cache_dir is not None:
        cache.write_files(cache_dir / PARSE_CACHE, PARSE_CACHE_VERSION, files)


# -- ranking -------------------------------------------------------------------------------


@dataclass
class _Ranking:
    files: list[str]  # every inventory file, best first
    defs: Mapping[str, list[Definition]]  # per file, best first
    mentioned: set[str]


def _task_words(task: str) -> tuple[set[str], set[str], set[str]]:
    """Identifiers the task mentions (with ``--some-flag`` as ``some_flag``), those of them
    written like code (in backticks, dotted, snake_case or camelCase), and the lower-cased
    words, path pieces and dotted pieces, to match file names."""
    idents = set(IDENT.findall(task))
    flags = {m.replace("-", "_") for m in FLAG.findall(task)}
    idents |= flags
    code = set(flags)
    for span in BACKTICKS.findall(task):
        code.update(IDENT.findall(span))
    for piece in PATHLIKE.findall(task):
        if "." in piece.strip("."):
            code.update(IDENT.findall(piece))
    code.update(i for i in idents if "_" in i.strip("_") or i[1:] != i[1:].lower())
    words = {w.lower() for w in idents}
    for piece in PATHLIKE.findall(task):
        words.add(piece.strip("./").lower())
    for w in list(words):
        if len(w) > 4 and w.endswith("s"):
            words.add(w[:-1])
    return idents, code, words


def is_test(path: str) -> bool:
    parts = path.lower().split("/")
    name = parts[-1].rsplit(".", 1)[0]
    return (
        any(p in ("test", "tests", "testing") for p in parts[:-1])
        or name.startswith("test_")
        or name.endswith("_test")
        or name == "conftest"
    )


def _seed(index: _Index, task: str, recent: Sequence[str]) -> tuple[dict[str, float], set[str]]:
    """The personalisation of the ranking: files defining the identifiers the task mentions
    (shared by their definers; code-like names count more), files whose path pieces the task
    names, and the recently changed files; test files count less."""
    idents, code, words = _task_words(task)
    mentioned = {i for i in idents if i in index.defines and len(i) >= 3}
    personal: dict[str, float] = defaultdict(float)
    files = max(2, len(index.facts))

    def rarity(ident: str) -> float:
        """1 for a name few files use, falling towards 0 for one every file uses."""
        return math.log(files / (1 + index.users.get(ident, 0))) / math.log(files)

    for ident in mentioned:
        definers = index.defines[ident]
        weight = (SEED_CODE_IDENT if ident in code else SEED_WORD_IDENT) * max(0.05, rarity(ident))
        for path in definers:
            personal[path] += weight / len(definers)
    for ident in idents - mentioned:
        binders = index.binds.get(ident, [])
        if len(ident) < 4 or not binders or ident not in code:
            continue
        for path in binders:
            personal[path] += SEED_BOUND / len(binders)
    lowered_task = task.lower()
    for path in index.inventory.files:
        lowered = path.lower()
        if lowered in words or (len(path) > 6 and lowered in lowered_task):
            personal[path] += SEED_PATH
            continue
        if outlinable(path) and module_name(path).lower() in words:
            personal[path] += SEED_PATH
            continue
        parts = lowered.split("/")
        stem = parts[-1].rsplit(".", 1)[0]
        hit = 0.0
        pieces = [p for p in stem.split("_") if len(p) >= 3]
        if (
            len(stem) >= 3
            and stem not in GENERIC_STEMS
            and (stem in words or ("_" in stem and stem.replace("_", " ") in lowered_task))
        ):
            hit += SEED_STEM
        elif len(pieces) > 1 and stem not in GENERIC_STEMS:
            hit += SEED_STEM * sum(p in words for p in pieces) / len(pieces) * STEM_PIECE
        hit += SEED_DIR * sum(1 for d in parts[:-1][-3:] if len(d) >= 3 and d in words)
        if hit:
            personal[path] += hit
    for position, path in enumerate(recent):
        personal[path] += SEED_RECENT / (1 + position / 10)
    for path in list(personal):
        if is_test(path):
            personal[path] *= TEST_FACTOR
    return personal, mentioned


def _mul(ident: str, definers: int) -> float:
    mul = 1.0
    if len(ident) >= 8 and ("_" in ident.strip("_") or ident[1:] != ident[1:].lower()):
        mul *= 3.0
    if ident.startswith("_"):
        mul *= 0.1
    if definers > 5:
        mul *= 0.1
    return mul


@dataclass
class _Graph:
    """Which file uses which file's names, as arrays (task-independent: built once an index).

    Edges ``src -> dst`` with weight ``w`` (parallel edges summed by the iteration), and the
    flows ``(src, key, w)`` along each name, ``keys[key]`` being ``(defining file, name)``.
    """

    files: list[str]
    position: dict[str, int]
    src: Any
    dst: Any
    weight: Any
    out: Any
    flow_src: Any
    flow_key: Any
    flow_weight: Any
    keys: list[tuple[str, str]]
    tests: Any


def _graph(index: _Index) -> _Graph:
    if index.graph is not None:
        cached: _Graph = index.graph
        return cached
    import numpy as np  # lazily: only the map needs it

    files = list(index.inventory.files)
    position = {p: i for i, p in enumerate(files)}
    src: list[int] = []
    dst: list[int] = []
    weight: list[float] = []
    flow_src: list[int] = []
    flow_key: list[int] = []
    flow_weight: list[float] = []
    keys: dict[tuple[str, str], int] = {}
    for source, fact in index.facts.items():
        s = position[source]
        for ident, count in fact.refs.items():
            definers = index.defines.get(ident)
            if not definers:
                continue
            w = _mul(ident, len(definers)) * math.sqrt(count)
            for target in definers:
                if target != source:
                    src.append(s)
                    dst.append(position[target])
                    weight.append(w)
                    flow_src.append(s)
                    flow_key.append(keys.setdefault((target, ident), len(keys)))
                    flow_weight.append(w)
        for module in fact.imports:
            imported = index.modules.get(module)
            if imported is not None and imported != source:
                src.append(s)
                dst.append(position[imported])
                weight.append(0.5)
    graph = _new_graph(
        files,
        np.asarray(src, dtype=np.int64),
        np.asarray(dst, dtype=np.int64),
        np.asarray(weight, dtype=np.float64),
        np.asarray(flow_src, dtype=np.int64),
        np.asarray(flow_key, dtype=np.int64),
        np.asarray(flow_weight, dtype=np.float64),
        list(keys),
    )
    index.graph = graph
    return graph


def _new_graph(
    files: list[str],
    src: Any,
    dst: Any,
    weight: Any,
    flow_src: Any,
    flow_key: Any,
    flow_weight: Any,
    keys: list[tuple[str, str]],
    tests: Any = None,
) -> _Graph:
    import numpy as np

    n = len(files)
    if tests is None:
        tests = np.asarray([is_test(p) for p in files], dtype=bool)
    return _Graph(
        files=files,
        position={p: i for i, p in enumerate(files)},
        src=src,
        dst=dst,
        weight=weight,
        out=np.bincount(src, weights=weight, minlength=n) if n else np.zeros(0),
        flow_src=flow_src,
        flow_key=flow_key,
        flow_weight=flow_weight,
        keys=keys,
        tests=tests,
    )


def pagerank(graph: _Graph, seed: Any, alpha: float = 0.85, tol: float = 1e-8) -> Any:
    """Personalised PageRank by power iteration (the definition networkx uses): a walk that
    follows an edge in proportion to its weight with probability ``alpha`` and otherwise, or
    from a file with no edges, jumps to a file in proportion to ``seed``."""
    import numpy as np

    n = len(graph.files)
    if n == 0:
        return np.zeros(0)
    jump = seed / seed.sum() if seed.sum() > 0 else np.full(n, 1.0 / n)
    out = graph.out
    share = np.divide(
        graph.weight, out[graph.src], out=np.zeros_like(graph.weight), where=out[graph.src] > 0
    )
    dangling = out == 0
    x = jump.copy()
    for _ in range(200):
        walked = np.bincount(graph.dst, weights=x[graph.src] * share, minlength=n)
        following = alpha * (walked + x[dangling].sum() * jump) + (1 - alpha) * jump
        if float(np.abs(following - x).sum()) < n * tol:
            return following
        x = following
    return x


def _rank(index: _Index, task: str, focus: Sequence[str], recent: Sequence[str]) -> _Ranking:
    import numpy as np

    personal, mentioned = _seed(index, task, recent)
    total = sum(personal.values()) or 1.0
    for path in focus:
        if path in index.inventory:
            personal[path] += 10.0 * total
    graph = _graph(index)
    files = graph.files
    seed = np.zeros(len(files))
    for path, value in personal.items():
        if value > 0 and path in graph.position:
            seed[graph.position[path]] = value
    rank = pagerank(graph, seed)
    # The seed itself counts too: PageRank alone drifts to the hubs every file uses.
    top_rank = float(rank.max()) if len(files) else 1.0
    top_seed = float(seed.max()) if len(files) else 1.0
    score = rank / (top_rank or 1.0) + SEED_BLEND * seed / (top_seed or 1.0)
    score[graph.tests] *= TEST_FACTOR
    for path in focus:
        if path in graph.position:
            score[graph.position[path]] += 10.0

    def_rank: dict[tuple[str, str], float] = {}
    if len(graph.keys):
        flow = rank[graph.flow_src] * graph.flow_weight / graph.out[graph.flow_src]
        totals = np.bincount(graph.flow_key, weights=flow, minlength=len(graph.keys))
        def_rank = dict(zip(graph.keys, totals.tolist(), strict=True))

    scores = score.tolist()
    order = sorted(
        range(len(files)), key=lambda i: (-scores[i], not outlinable(files[i]), files[i])
    )
    ordered = [files[i] for i in order]
    return _Ranking(ordered, _RankedDefs(index, def_rank, mentioned), mentioned)


class _RankedDefs(Mapping[str, list[Definition]]):
    """Each file's definitions, best first, sorted only when a file is looked at."""

    def __init__(
        self, index: _Index, def_rank: Mapping[tuple[str, str], float], mentioned: set[str]
    ) -> None:
        self._facts = index.facts
        self._rank = def_rank
        self._mentioned = mentioned
        self._sorted: dict[str, list[Definition]] = {}

    def __getitem__(self, path: str) -> list[Definition]:
        found = self._sorted.get(path)
        if found is not None:
            return found
        fact = self._facts.get(path)
        if fact is None or not fact.has_defs or not fact.defs:
            raise KeyError(path)

        def priority(d: Definition) -> tuple[float, ...]:
            public = not d.name.startswith("_") or d.name == "__init__"
            return (
                float(d.name in self._mentioned),
                self._rank.get((path, d.name), 0.0),
                float(public),
                -float(d.depth),
                -float(d.line),
            )

        found = self._sorted[path] = sorted(fact.defs, key=priority, reverse=True)
        return found

    def __iter__(self) -> Iterator[str]:
        return (p for p, f in self._facts.items() if f.has_defs)

    def __len__(self) -> int:
        return sum(1 for f in self._facts.values() if f.has_defs)


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
    parents: dict[str, dict[int, Definition]] = {}
    limit = budget * OUTLINE_SHARE
    while heap:
        neg, position, path, k = heapq.heappop(heap)
        defs = ranking.defs[path]
        d = defs[k]
        add = [d] if d.line not in chosen[path] else []
        if path not in parents:
            parents[path] = _parents(defs)
        parent = parents[path].get(d.line)
        while parent is not None and parent.line not in chosen[path]:
            add.append(parent)
            parent = parents[path].get(parent.line)
        cost = sum(len(_def_line(x)) + 1 for x in add)
        if not chosen[path]:
            cost += len(path) + 2 + 24  # the path line and a "more definitions" line
        if add and used + cost > limit:
            continue  # this file's outline stops here; other files' lines may still fit
        used += cost
        chosen[path].update(x.line for x in add)
        if k + 1 < len(defs):
            bonus = 1.0 if defs[k + 1].name in ranking.mentioned else DEF_DECAY
            heapq.heappush(heap, (neg * bonus, position, path, k + 1))

    included = [p for p in ranking.files if chosen.get(p)]
    blocks: list[tuple[str, list[str]]] = []
    for path in included:
        lines = [f"{path}:"]
        by_line = {d.line: d for d in ranking.defs[path]}
        lines.extend(_def_line(by_line[line]) for line in sorted(chosen[path]))
        more = len(ranking.defs[path]) - len(chosen[path])
        if more:
            lines.append(f"      ⋮ {more} more definition{'s' if more > 1 else ''}")
        blocks.append((path, lines))
    used = len(header) + 1 + sum(len(x) + 1 for _, lines in blocks for x in lines)

    rest = [p for p in ranking.files if p not in chosen or not chosen[p]]
    trailer_reserve = 60 + 24 * min(12, len({_folder(p) for p in rest}))

    # Tier 2: one line per file: the path and its best definitions.
    summary: list[tuple[str, str]] = []
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
        summary.append((path, line))
        used += len(line) + 1

    # Tier 3: bare paths, then a count per folder for whatever is still left.
    shown = {p for p, _ in summary}
    listed: list[str] = []
    limit = budget - trailer_reserve
    for path in rest:
        if path in shown:
            continue
        if used + len(path) + 1 > limit:
            break
        listed.append(path)
        used += len(path) + 1

    # The estimates above leave room for the closing count; if it still does not fit, the
    # last listed paths, then summaries, then outlines move to the count until it does.
    while True:
        text = _assemble(header, blocks, summary, listed, ranking.files, not ranking.files)
        if len(text) <= budget or not (listed or summary or blocks):
            break
        if listed:
            listed.pop()
        elif summary:
            summary.pop()
        else:
            blocks.pop()
    in_text = {p for p, _ in blocks} | {p for p, _ in summary} | set(listed)
    return RepoMap(
        text=text,
        included=tuple(p for p, _ in blocks),
        omitted=tuple(p for p in ranking.files if p not in in_text),
        tokens=tokens(text),
        summarised=tuple(p for p, _ in summary),
        listed=tuple(listed),
    )


def _assemble(
    header: str,
    blocks: list[tuple[str, list[str]]],
    summary: list[tuple[str, str]],
    listed: list[str],
    files: list[str],
    empty: bool,
) -> str:
    parts = [header]
    for _, lines in blocks:
        parts += lines
    if summary:
        parts += ["", "More files (best definitions):", *(line for _, line in summary)]
    if listed:
        parts += ["", "Other files:", *listed]
    shown = {p for p, _ in blocks} | {p for p, _ in summary} | set(listed)
    omitted = [p for p in files if p not in shown]
    if omitted:
        folders = Counter(_folder(p) for p in omitted)
        top = folders.most_common(12)
        counts = ", ".join(f"{f} ({n})" for f, n in top)
        extra = len(folders) - len(top)
        tail = f", and {extra} more folders" if extra > 0 else ""
        parts += ["", f"Not shown, for the budget: {len(omitted)} files in {counts}{tail}."]
    if empty:
        parts += ["  (empty workspace)"]
    return "\n".join(parts)


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
