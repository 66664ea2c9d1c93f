"""The repository map on small real repositories: outlines from ``ast``, a task naming an
identifier ranks its file first, the focus file comes first, the map stays within its budget
and names what it left out, parses are cached by content key, and ``related_definitions``
shows what a file uses from others.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keel.context import cache as cache_module
from keel.context import repomap as repomap_module
from keel.context.outline import python_facts
from keel.context.repomap import INDEX_CACHE, PARSE_CACHE, RepositoryMap

from .conftest import commit_all, git, write

SHAPES = '''"""Shapes."""

from geometry.units import to_metres


class Polygon:
    sides = 0

    def area(self, scale: float) -> float:
        return to_metres(scale) * self.sides

    def perimeter(self):
        return self.sides


def triangulate(polygon):
    polygon.vertex_cache = []
    return polygon
'''
UNITS = """def to_metres(value):
    return value / 100


def to_inches(value):
    return value * 2.54
"""
REPORT = """from geometry.shapes import Polygon, triangulate


def summarise_polygons(items):
    return [triangulate(Polygon()) for _ in items]
"""


def module(i: int) -> str:
    return f"def helper_number_{i}(x):\n    return x + {i}\n\n\nclass Thing{i}:\n    pass\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    git(root, "init", "-q")
    files: dict[str, str | bytes] = {
        "geometry/__init__.py": "",
        "geometry/shapes.py": SHAPES,
        "geometry/units.py": UNITS,
        "reports/report.py": REPORT,
        "README.md": "# Geometry\n",
        "tests/test_shapes.py": "from geometry.shapes import Polygon\n\n\ndef test_it():\n"
        "    assert Polygon().perimeter() == 0\n",
    }
    files.update({f"misc/filler_{i:02d}.py": module(i) for i in range(40)})
    write(root, files)
    commit_all(root)
    return root


def test_python_facts_outline_references_and_bound_names() -> None:
    facts = python_facts(SHAPES, "geometry.shapes")
    outline = [(d.kind, d.name, d.line, d.depth) for d in facts.defs]
    assert outline == [
        ("class", "Polygon", 6, 0),
        ("def", "area", 9, 1),
        ("def", "perimeter", 12, 1),
        ("def", "triangulate", 16, 0),
    ]
    assert facts.defs[1].text == "def area(self, scale: float) -> float:"
    assert facts.refs["to_metres"] == 2 and "geometry.units" in facts.imports
    assert {"sides", "vertex_cache", "scale", "polygon"} <= set(facts.names)
    broken = python_facts("def oops(:\n", "m")
    assert not broken.parsed and broken.defs == ()


def test_relative_imports_resolve_against_the_package() -> None:
    facts = python_facts("from .units import to_metres\nfrom .. import top\n", "pkg.sub.mod")
    assert "pkg.sub.units" in facts.imports and "pkg" in facts.imports


async def test_task_naming_an_identifier_ranks_its_file_first(repo: Path) -> None:
    repo_map = RepositoryMap(repo)
    ranked = await repo_map.render_map("to_inches rounds wrongly", budget_tokens=2000)
    assert ranked.included[0] == "geometry/units.py"
    ranked = await repo_map.render_map(
        "summarise_polygons should skip empty items", budget_tokens=2000
    )
    assert ranked.included[0] == "reports/report.py"
    assert "    4│def summarise_polygons(items):" in ranked.text.splitlines()


async def test_focus_file_comes_first(repo: Path) -> None:
    ranked = await RepositoryMap(repo).render_map(
        "to_inches rounds wrongly", focus=["misc/filler_07.py"], budget_tokens=2000
    )
    assert ranked.included[0] == "misc/filler_07.py"


async def test_map_fits_the_budget_and_names_what_it_left_out(repo: Path) -> None:
    every = set((await RepositoryMap(repo).index()).inventory.files)
    for budget in (60, 150, 400, 800, 2000):
        ranked = await RepositoryMap(repo).render_map("area of a Polygon", budget_tokens=budget)
        assert ranked.tokens == len(ranked.text) // 4
        assert ranked.tokens <= budget, (budget, ranked.text)
        tiers = [ranked.included, ranked.summarised, ranked.listed, ranked.omitted]
        assert sum(len(t) for t in tiers) == len(every)
        assert set().union(*tiers) == every
        lines = ranked.text.splitlines()
        for path in ranked.included:
            assert f"{path}:" in lines
        for path in ranked.summarised:
            assert any(line.startswith(f"{path}: ") for line in lines)
        for path in ranked.listed:
            assert path in lines
        if ranked.omitted:
            assert f"Not shown, for the budget: {len(ranked.omitted)} files in" in lines[-1]
    small = await RepositoryMap(repo).render_map("area of a Polygon", budget_tokens=150)
    assert small.omitted and "misc/ (" in small.text.splitlines()[-1]


async def test_outlines_name_the_definitions_they_leave_out(repo: Path) -> None:
    for budget in (100, 200, 400):
        ranked = await RepositoryMap(repo).render_map("Polygon perimeter", budget_tokens=budget)
        assert ranked.included
        for path in ranked.included:
            block = ranked.text.split(f"\n{path}:\n", 1)[1].split("\n")
            shown = 0
            more = 0
            for line in block:
                if "│" in line:
                    shown += 1
                elif "more definition" in line:
                    more = int(line.split("⋮")[1].split()[0])
                    break
                else:
                    break
            total = len(python_facts((repo / path).read_text(), "m").defs)
            assert shown + more == total, (path, budget)


async def test_large_budget_shows_every_outline(repo: Path) -> None:
    ranked = await RepositoryMap(repo).render_map("", budget_tokens=50_000)
    assert not ranked.omitted and not ranked.summarised
    assert "misc/filler_00.py:" in ranked.text and "README.md" in ranked.text
    assert "    9│    def area(self, scale: float) -> float:" in ranked.text


async def test_zero_budget_still_says_what_was_left_out(repo: Path) -> None:
    ranked = await RepositoryMap(repo).render_map("anything", budget_tokens=0)
    assert not ranked.included and ranked.omitted
    assert "Not shown, for the budget" in ranked.text


async def test_non_python_and_unparsable_files_are_listed(tmp_path: Path) -> None:
    write(
        tmp_path, {"main.rs": "fn main() {}\n", "bad.py": "def (:\n", "ok.py": "def fine():\n  1\n"}
    )
    ranked = await RepositoryMap(tmp_path).render_map("", budget_tokens=1000)
    lines = ranked.text.splitlines()
    assert "main.rs" in lines and "bad.py" in lines and "ok.py:" in lines


async def test_empty_workspace(tmp_path: Path) -> None:
    ranked = await RepositoryMap(tmp_path).render_map("task", budget_tokens=1000)
    assert "(empty workspace)" in ranked.text and ranked.included == ()


async def test_parses_are_cached_by_content_key(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    stored = json.loads((cache / PARSE_CACHE).read_text())
    assert "geometry/shapes.py" in stored["files"]

    parsed: list[str] = []
    real = repomap_module.python_facts

    def counting(source: str, module: str) -> object:
        parsed.append(module)
        return real(source, module)

    monkeypatch.setattr(repomap_module, "python_facts", counting)
    second = await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    assert parsed == [] and second.text == first.text

    write(repo, {"geometry/units.py": UNITS + "\n\ndef to_feet(value):\n    return value\n"})
    third = await RepositoryMap(repo, cache_dir=cache).render_map("to_feet", budget_tokens=900)
    assert parsed == ["geometry.units"]
    assert "def to_feet(value):" in third.text


async def test_corrupt_parse_cache_is_rebuilt(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / PARSE_CACHE).write_text(
        json.dumps({"version": 2, "files": {"geometry/shapes.py": ["x", [1, 2]]}})
    )
    ranked = await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    assert "geometry/shapes.py:" in ranked.text


def counting_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    parsed: list[str] = []
    real = repomap_module.python_facts

    def counting(source: str, module: str) -> object:
        parsed.append(module)
        return real(source, module)

    monkeypatch.setattr(repomap_module, "python_facts", counting)
    return parsed


def stored_digest(cache: Path) -> str:
    import numpy as np

    with np.load(cache / INDEX_CACHE, allow_pickle=False) as data:
        return str(data["digest"])


async def test_warm_map_reads_only_the_index_cache(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    (cache / PARSE_CACHE).write_text("not json")  # a warm map does not need the parses
    parsed = counting_parses(monkeypatch)
    warm = await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    assert warm == first and parsed == []
    # Related definitions need every file's references: read from the parses (rebuilt here).
    text = await RepositoryMap(repo, cache_dir=cache).related_definitions(
        ["reports/report.py"], budget_tokens=500
    )
    assert "def triangulate(polygon):" in text and parsed != []


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "empty", "other digest", "pickled member", "indices out of range"],
)
async def test_damaged_index_cache_is_ignored_and_rebuilt(
    repo: Path, tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    cache = tmp_path / "cache"
    first = await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    path = cache / INDEX_CACHE
    good = path.read_bytes()
    digest = stored_digest(cache)
    with np.load(path, allow_pickle=False) as data:
        members = {k: data[k] for k in data.files}
    if damage == "garbage":
        path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "other digest":
        np.savez(path.open("wb"), **{**members, "digest": np.array("0" * 64)})
    elif damage == "pickled member":
        np.savez(path.open("wb"), **{**members, "tables": np.array([{"x": 1}], dtype=object)})
    else:
        np.savez(path.open("wb"), **{**members, "dst": members["dst"] + 1000})
    again = await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    assert again == first
    assert stored_digest(cache) == digest
    # Rewritten whole: the next warm map needs neither the parses nor a parse.
    (cache / PARSE_CACHE).unlink()
    parsed = counting_parses(monkeypatch)
    warm = await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    assert warm == first and parsed == []


async def test_crafted_index_cache_with_the_current_digest_cannot_break_the_map(
    repo: Path, tmp_path: Path
) -> None:
    """Rows of the wrong type read as empty, bad counts make the cache rebuilt: the map is
    still made, within its budget."""
    import numpy as np

    cache = tmp_path / "cache"
    await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    path = cache / INDEX_CACHE
    with np.load(path, allow_pickle=False) as data:
        members = {k: data[k] for k in data.files}
    tables = json.loads(members["tables"].tobytes())
    tables["defines"] = {name: ["x", None, -5, 10**9] for name in tables["defines"]}
    tables["binds"] = {name: 3 for name in tables["binds"]}
    crafted = np.frombuffer(json.dumps(tables).encode(), dtype=np.uint8)
    np.savez(path.open("wb"), **{**members, "tables": crafted})
    ranked = await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    assert ranked.tokens <= 900 and "geometry/shapes.py" in ranked.text

    tables["users"] = {name: "many" for name in tables["users"]}
    crafted = np.frombuffer(json.dumps(tables).encode(), dtype=np.uint8)
    np.savez(path.open("wb"), **{**members, "tables": crafted})
    rebuilt = await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    assert "geometry/shapes.py:" in rebuilt.text.splitlines()[1]


async def test_a_changed_file_invalidates_exactly_its_parse_and_the_index(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    before = json.loads((cache / PARSE_CACHE).read_text())["files"]
    digest = stored_digest(cache)
    parsed = counting_parses(monkeypatch)
    write(repo, {"geometry/units.py": UNITS + "\n\ndef to_feet(value):\n    return value\n"})
    ranked = await RepositoryMap(repo, cache_dir=cache).render_map("to_feet", budget_tokens=900)
    assert "def to_feet(value):" in ranked.text and parsed == ["geometry.units"]
    after = json.loads((cache / PARSE_CACHE).read_text())["files"]
    assert set(after) == set(before)
    assert [p for p in after if after[p] != before[p]] == ["geometry/units.py"]
    assert stored_digest(cache) != digest
    # A new file (not a changed one) is a new entry; the others stay as they were.
    write(repo, {"extra.py": "def extra_thing():\n    return 1\n"})
    await RepositoryMap(repo, cache_dir=cache).render_map("extra_thing", budget_tokens=900)
    grown = json.loads((cache / PARSE_CACHE).read_text())["files"]
    assert set(grown) - set(after) == {"extra.py"}
    assert all(grown[p] == after[p] for p in after)


async def test_cache_writes_are_atomic(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails half way leaves the previous caches whole and no temporary file
    (the inventory's cache too)."""
    import numpy as np

    cache = tmp_path / "cache"
    first = await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    index, parses = (cache / INDEX_CACHE).read_bytes(), (cache / PARSE_CACHE).read_bytes()

    def half_written(handle: object, **arrays: object) -> None:
        handle.write(b"PK\x03\x04 half")  # type: ignore[attr-defined]
        raise OSError("disk full")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", half_written)
    monkeypatch.setattr(cache_module.os, "replace", failing_replace)  # every cache writes here
    write(repo, {"geometry/units.py": UNITS + "\n\ndef to_feet(value):\n    return value\n"})
    ranked = await RepositoryMap(repo, cache_dir=cache).render_map("to_feet", budget_tokens=900)
    assert "def to_feet(value):" in ranked.text  # the map itself does not need the cache
    assert (cache / INDEX_CACHE).read_bytes() == index
    assert (cache / PARSE_CACHE).read_bytes() == parses
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        ["inventory.json", INDEX_CACHE, PARSE_CACHE]
    )
    monkeypatch.undo()
    write(repo, {"geometry/units.py": UNITS})
    again = await RepositoryMap(repo, cache_dir=cache).render_map("Polygon", budget_tokens=900)
    assert again == first


async def test_map_never_creates_a_missing_keel_folder(repo: Path) -> None:
    keel = repo / ".keel"
    repo_map = RepositoryMap(repo, cache_dir=keel / "context", cache_only_if=keel)
    await repo_map.render_map("Polygon", budget_tokens=500)
    assert not keel.exists()
    keel.mkdir()
    fresh = RepositoryMap(repo, cache_dir=keel / "context", cache_only_if=keel)
    await fresh.render_map("Polygon", budget_tokens=500)
    assert (keel / "context" / PARSE_CACHE).is_file()


async def test_secret_and_ignored_files_never_reach_the_map(repo: Path) -> None:
    write(repo, {".env": "TOKEN=abc\n", ".gitignore": "build/\n", "build/gen.py": "def g(): 1\n"})
    ranked = await RepositoryMap(repo).render_map("TOKEN g", budget_tokens=50_000)
    assert ".env" not in ranked.text and "build/gen.py" not in ranked.text


async def test_related_definitions_of_a_file(repo: Path) -> None:
    text = await RepositoryMap(repo).related_definitions(["reports/report.py"], budget_tokens=500)
    assert "geometry/shapes.py:" in text
    assert "    6│class Polygon:" in text and "def triangulate(polygon):" in text
    assert "reports/report.py" not in text
    assert await RepositoryMap(repo).related_definitions(["README.md"], budget_tokens=500) == ""
    tight = await RepositoryMap(repo).related_definitions(["reports/report.py"], budget_tokens=30)
    assert len(tight) // 4 <= 30 and "not shown for the budget" in tight


async def test_pagerank_follows_the_seed_and_the_edges(tmp_path: Path) -> None:
    from keel.context.repomap import _graph, pagerank

    write(
        tmp_path,
        {
            "a.py": "from b import beta\n\n\ndef alpha():\n    return beta()\n",
            "b.py": "def beta():\n    return 1\n",
            "c.py": "def gamma():\n    return 2\n",
        },
    )
    index = await RepositoryMap(tmp_path).index()
    graph = _graph(index)
    import numpy as np

    seed = np.zeros(3)
    seed[graph.position["a.py"]] = 1.0
    rank = pagerank(graph, seed)
    assert abs(float(rank.sum()) - 1.0) < 1e-9
    a, b, c = (float(rank[graph.position[p]]) for p in ("a.py", "b.py", "c.py"))
    assert b > c and a > c and c == 0.0
    uniform = pagerank(graph, np.zeros(3))
    assert float(uniform[graph.position["b.py"]]) > float(uniform[graph.position["c.py"]]) > 0


async def test_hostile_focus_and_task_change_nothing_outside_the_inventory(repo: Path) -> None:
    task = "(*[?\\ `unclosed " + "--flag-" * 5000 + " ../../etc/passwd .git/config"
    ranked = await RepositoryMap(repo).render_map(
        task, focus=["../../etc/passwd", ".git/config", "/etc/shadow", ""], budget_tokens=600
    )
    assert ranked.tokens <= 600
    assert "passwd" not in ranked.text and ".git/" not in ranked.text
    assert "shadow" not in ranked.text
