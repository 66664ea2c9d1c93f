"""The architect's read-only tools over a real git repository and its real inventory.

Every refusal of the policy is here, each asserted on the text the model would read: absolute
paths, ``..``, ``.git/`` and ``.keel/``, symlinks leading out (or into ``.git/``), ignored and
secret-looking files; and every result stays within its bound.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keel.context.explore import (
    LIST,
    MAX_OPEN_LINES,
    OPEN,
    SEARCH,
    SYMBOL,
    WorkspaceExplorer,
    bound,
)
from keel.context.inventory import Inventory, secret_looking
from tests.unit.context.conftest import commit_all, git, write

CORE = '''"""The core."""

import os


class Context:
    """A context."""

    def invoke(self, callback):
        return callback()


def parse_args(argv):
    ctx = Context()
    return ctx.invoke(lambda: argv)


LIMIT = 10
'''


@pytest.fixture
async def explorer(tmp_path: Path) -> WorkspaceExplorer:
    root = tmp_path / "ws"
    root.mkdir()
    git(root, "init", "-q")
    write(
        root,
        {
            "src/pkg/__init__.py": "from pkg.core import parse_args\n",
            "src/pkg/core.py": CORE,
            "src/pkg/util.js": "export function parse_args(x) {\n  return x;\n}\n",
            "tests/test_core.py": "from pkg.core import parse_args\n\n\ndef test_it():\n"
            "    assert parse_args([1]) == [1]\n",
            "README.md": "# pkg\nUse parse_args.\n",
            ".gitignore": "build/\n*.log\n",
            "build/out.py": "parse_args = 1\n",
            "debug.log": "parse_args secret log\n",
            "big.txt": "\n".join(f"line {n} parse_args" for n in range(1, 3001)) + "\n",
        },
    )
    commit_all(root)
    write(root, {".env": "API_TOKEN=hunter2hunter2\n", "config/id_rsa": "KEY parse_args\n"})
    (tmp_path / "outside.py").write_text("parse_args = 'outside'\n")
    os.symlink(tmp_path / "outside.py", root / "escape.py")
    os.symlink(tmp_path, root / "updir")
    os.symlink(root / ".git" / "config", root / "gitconfig.py")
    (root / ".keel").mkdir()
    (root / ".keel" / "keel.db").write_text("parse_args store\n")
    inventory = await Inventory.load(root, root / ".keel" / "context")
    return WorkspaceExplorer(root, inventory, secret_looking)


async def call(explorer: WorkspaceExplorer, tool: str, limit: int = 8_000, **arguments: object):
    return await explorer.call(tool, arguments, limit)


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/etc/passwd", "absolute paths"),
        ("~/.ssh/id_rsa", "absolute paths"),
        ("../outside.py", "'..' is not allowed"),
        ("src/../../outside.py", "'..' is not allowed"),
        ("src\\pkg\\core.py", "use '/' separators"),
        (".git/config", ".git/ is git's own data"),
        ("./.git/HEAD", ".git/ is git's own data"),
        ("src/.git/config", ".git/"),
        (".keel/keel.db", ".keel/ is Keel's own state"),
        ("escape.py", "outside the workspace"),
        ("updir/outside.py", "outside the workspace"),
        ("gitconfig.py", "reserved"),
        (".env", "looks like it holds secrets"),
        ("config/id_rsa", "looks like it holds secrets"),
        ("build/out.py", "ignored by git"),
        ("debug.log", "ignored by git"),
        ("src/pkg/missing.py", "no such file"),
        ("src/pkg", "is a folder"),
        ("", "empty path"),
    ],
)
async def test_open_file_refuses_with_a_reason_the_model_reads(
    explorer: WorkspaceExplorer, path: str, reason: str
) -> None:
    result = await call(explorer, OPEN, path=path)
    assert result.refused
    assert result.text.startswith("refused: ")
    assert reason in result.text
    assert "hunter2" not in result.text and "outside'" not in result.text


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/", "absolute paths"),
        ("..", "'..' is not allowed"),
        (".git", ".git/ is git's own data"),
        (".keel", ".keel/ is Keel's own state"),
        ("updir", "outside the workspace"),
        ("build", "no such folder"),
    ],
)
async def test_list_and_search_refuse_the_same_folders(
    explorer: WorkspaceExplorer, path: str, reason: str
) -> None:
    for tool, extra in ((LIST, {}), (SEARCH, {"pattern": "parse_args"})):
        result = await call(explorer, tool, path=path, **extra)
        assert result.refused, (tool, path, result.text)
        assert reason in result.text


async def test_bad_arguments_are_refused_not_raised(explorer: WorkspaceExplorer) -> None:
    cases = [
        ("delete_file", {"path": "x"}, "unknown tool 'delete_file'"),
        (OPEN, {"path": 3}, "the path must be a string"),
        (OPEN, {"path": "src/pkg/core.py", "start": "ten"}, "start must be an integer"),
        (SEARCH, {"pattern": ""}, "pattern must be a non-empty string"),
        (SEARCH, {"pattern": "x" * 201}, "longer than 200"),
        (SEARCH, {"pattern": "(", "regex": True}, "invalid regular expression"),
        (SYMBOL, {"name": "a b; rm"}, "name must be an identifier"),
        (OPEN, {"_unparsed": "{not json"}, "the path must be a string"),
    ]
    for tool, arguments, reason in cases:
        result = await explorer.call(tool, arguments, 8_000)
        assert result.refused, (tool, arguments)
        assert reason in result.text


async def test_search_never_reports_ignored_secret_outside_or_state_files(
    explorer: WorkspaceExplorer,
) -> None:
    result = await call(explorer, SEARCH, pattern="parse_args", max_results=200)
    assert not result.refused
    paths = {line.split(":", 1)[0] for line in result.text.splitlines() if ":" in line}
    assert {"src/pkg/core.py", "src/pkg/__init__.py", "tests/test_core.py", "README.md"} <= paths
    for hidden in ("build/out.py", "debug.log", ".env", "config/id_rsa", "escape.py"):
        assert hidden not in paths
    assert ".keel" not in result.text and "outside" not in result.text


async def test_list_folder_names_what_it_hides(explorer: WorkspaceExplorer) -> None:
    result = await call(explorer, LIST, path=".")
    lines = result.text.splitlines()
    assert "src/ (3 files)" in lines and "tests/ (1 files)" in lines and "README.md" in lines
    assert not any(name in result.text for name in (".env", "build", ".keel", ".git/", "id_rsa"))
    assert (await call(explorer, LIST, path="src/pkg")).text.splitlines()[1:] == [
        "src/pkg/__init__.py",
        "src/pkg/core.py",
        "src/pkg/util.js",
    ]


# -- what the tools return ---------------------------------------------------------------------


async def test_open_file_numbers_lines_and_bounds_the_range(explorer: WorkspaceExplorer) -> None:
    result = await call(explorer, OPEN, path="src/pkg/core.py", start=9, end=10)
    assert result.text.splitlines() == [
        "src/pkg/core.py lines 9-10 of 18",
        "    9      def invoke(self, callback):",
        "   10          return callback()",
    ]
    whole = await call(explorer, OPEN, path="big.txt", start=1, end=3000, limit=100_000)
    assert whole.text.splitlines()[0] == f"big.txt lines 1-{MAX_OPEN_LINES} of 3000"


async def test_find_symbol_separates_definitions_from_references(
    explorer: WorkspaceExplorer,
) -> None:
    text = (await call(explorer, SYMBOL, name="parse_args")).text
    definitions, references = text.split("references")
    assert "src/pkg/core.py:13: def parse_args(argv):" in definitions
    assert "src/pkg/util.js:1: export function parse_args(x) {" in definitions
    assert "tests/test_core.py:1:" in references and "README.md:2:" in references
    assert "src/pkg/core.py:13" not in references
    method = (await call(explorer, SYMBOL, name="Context.invoke")).text
    assert "src/pkg/core.py:9: def invoke(self, callback):" in method
    constant = (await call(explorer, SYMBOL, name="LIMIT")).text
    assert "src/pkg/core.py:18: LIMIT = 10" in constant


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        (SEARCH, {"pattern": "parse_args", "max_results": 200}),
        (SEARCH, {"pattern": "line", "path": "big.txt"}),
        (OPEN, {"path": "big.txt", "start": 1, "end": 400}),
        (SYMBOL, {"name": "parse_args"}),
        (LIST, {"path": "."}),
    ],
)
async def test_every_result_is_bounded_and_says_what_was_cut(
    explorer: WorkspaceExplorer, tool: str, arguments: dict[str, object]
) -> None:
    result = await explorer.call(tool, arguments, 600)
    assert len(result.text) <= 600
    full = await explorer.call(tool, arguments, 100_000)
    if len(full.text) > 600:
        assert "not shown" in result.text


async def test_search_caps_its_matches_and_counts_the_rest(explorer: WorkspaceExplorer) -> None:
    result = await call(explorer, SEARCH, pattern="parse_args", path="big.txt", max_results=5)
    lines = result.text.splitlines()
    assert lines[:2] == ["big.txt:1: line 1 parse_args", "big.txt:2: line 2 parse_args"]
    assert lines[-1] == "[2995 more match(es) not shown; narrow the search]"
    spread = (await call(explorer, SEARCH, pattern="parse_args")).text.splitlines()
    assert "[big.txt: 2990 more match(es) in this file]" in spread  # it crowds out nothing
    assert any(line.startswith("tests/test_core.py:") for line in spread)


def test_bound_cuts_at_a_line_end() -> None:
    text = "".join(f"line {n}\n" for n in range(1000))
    cut = bound(text, 300)
    assert len(cut) <= 300
    assert cut.endswith("more line(s) not shown; narrow the request]")
    assert cut.splitlines()[-2].startswith("line ")
    one_long_line = "x" * 5000
    assert len(bound(one_long_line, 300)) <= 300
    for tiny in (0, 1, 50, 119):  # what is left of a nearly spent budget
        assert len(bound(text, tiny)) == tiny


async def test_a_tiny_limit_is_kept(explorer: WorkspaceExplorer) -> None:
    for limit in (0, 10, 150):
        result = await call(explorer, SEARCH, limit=limit, pattern="parse_args")
        assert len(result.text) <= limit


async def test_refusals_are_bounded_too(explorer: WorkspaceExplorer) -> None:
    huge = "a/" * 20_000 + ".env"
    for tool, arguments in ((OPEN, {"path": huge}), ("x" * 10_000, {})):
        result = await explorer.call(tool, arguments, 500)
        assert result.refused and len(result.text) <= 500


@pytest.mark.parametrize("pattern", ["(a+)+$", r"(\w+\s?)*x", "(x*){2,}", r"(a)\1"])
async def test_patterns_that_backtrack_forever_are_refused(
    explorer: WorkspaceExplorer, pattern: str
) -> None:
    result = await call(explorer, SEARCH, pattern=pattern, regex=True)
    assert result.refused and "simplify the pattern" in result.text


async def test_ordinary_regexes_and_literals_still_work(explorer: WorkspaceExplorer) -> None:
    found = await call(explorer, SEARCH, pattern=r"def \w+\(argv\)", regex=True)
    assert found.text == "src/pkg/core.py:13: def parse_args(argv):"
    literal = await call(explorer, SEARCH, pattern="(a+)+", path="src")
    assert not literal.refused and literal.text == "no match for '(a+)+'"


async def test_a_scan_that_runs_out_of_time_says_how_far_it_got(
    explorer: WorkspaceExplorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("keel.context.explore.SCAN_SECONDS", -1.0)
    for tool, arguments in ((SEARCH, {"pattern": "parse_args"}), (SYMBOL, {"name": "parse_args"})):
        result = await explorer.call(tool, arguments, 8_000)
        assert not result.refused
        assert result.text.splitlines()[-1].startswith("[stopped after -1 s: 0 of ")
        assert "give a path to narrow the search" in result.text


async def test_the_inventory_is_listed_once_at_the_first_call(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    loads = []

    async def load() -> list[str]:
        loads.append(1)
        return ["a.py"]

    lazy = WorkspaceExplorer(tmp_path, secret=secret_looking, load=load)
    assert loads == []
    assert (await lazy.call(OPEN, {"path": "a.py"}, 1000)).text.endswith("    1  x = 1")
    assert (await lazy.call(LIST, {}, 1000)).text.splitlines()[-1] == "a.py"
    assert loads == [1]


async def test_a_workspace_that_cannot_be_listed_is_a_refusal(tmp_path: Path) -> None:
    async def load() -> list[str]:
        raise PermissionError(13, "Permission denied")

    broken = WorkspaceExplorer(tmp_path, secret=secret_looking, load=load)
    result = await broken.call(SEARCH, {"pattern": "x"}, 1000)
    assert result.refused and "cannot be listed (Permission denied)" in result.text


async def test_python_that_does_not_parse_is_searched_as_text(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def helper(:\n    pass\n\nhelper()\n")
    (tmp_path / "ok.py").write_text("from broken import helper\nclass helper2: ...\n")
    explorer = WorkspaceExplorer(tmp_path, ["broken.py", "ok.py"], secret_looking)
    for _ in range(2):  # the second lookup comes from the definition index
        text = (await call(explorer, SYMBOL, name="helper")).text
        assert "broken.py:1: def helper(:" in text.split("references")[0]
        assert "ok.py:1: from broken import helper" in text.split("references")[1]
        assert "ok.py:2" not in text
