"""pytest's JUnit XML, read back as one record per failing test.

The terminal output of pytest is for people and changes between versions; the JUnit XML is a
stable, structured account of every test. Keel asks for ``junit_family=xunit1`` because that
family keeps the ``file`` and ``line`` attributes, from which the pytest node id
(``tests/test_x.py::TestK::test_p[2]``) is rebuilt. The file is pytest's own output written to a
private temporary directory, never something the model wrote.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from keel.plugins.base import first_lines

_LOCATION = re.compile(r"^(?P<path>[^\s:][^:\n]*\.py):(?P<line>\d+): ", re.MULTILINE)
_ERROR_LINE = re.compile(r"^E\s+(?P<text>.*\S)", re.MULTILINE)


@dataclass(frozen=True)
class FailedTest:
    """One failed or errored test (or a test module that failed to collect)."""

    test_id: str
    kind: str  # "failure", "error" or "collection"
    message: str
    path: str | None
    line: int | None


@dataclass(frozen=True)
class SuiteResult:
    """The totals of a run and its problems."""

    tests: int
    problems: tuple[FailedTest, ...]


def read_junit(xml_path: Path, root: Path) -> SuiteResult | None:
    """Parse pytest's JUnit XML; ``None`` when it is missing or unreadable (pytest died)."""
    try:
        tree = ET.parse(xml_path)
    except (OSError, ET.ParseError):
        return None
    tests = 0
    problems: list[FailedTest] = []
    for suite in tree.getroot().iter("testsuite"):
        tests += int(suite.get("tests", "0") or 0)
    for case in tree.getroot().iter("testcase"):
        problems.extend(_case_problems(case, root))
    return SuiteResult(tests, tuple(problems))


def _case_problems(case: ET.Element, root: Path) -> list[FailedTest]:
    out = []
    for outcome in case:
        if outcome.tag not in ("failure", "error"):
            continue
        text = outcome.text or ""
        message = outcome.get("message") or ""
        collection = outcome.tag == "error" and not case.get("classname")
        test_id = _test_id(case, root)
        if collection:
            out.append(_collection_problem(test_id, message, text))
        else:
            out.append(_test_problem(test_id, outcome.tag, message, text, case))
    return out


def _test_problem(test_id: str, kind: str, message: str, text: str, case: ET.Element) -> FailedTest:
    summary = first_lines(message) or _error_lines(text) or kind
    path, line = _location(text, test_id)
    if path is None and case.get("file"):
        path = case.get("file")
        line = int(case.get("line", "0")) + 1 if case.get("line") else None
    return FailedTest(test_id, kind, summary, path, line)


def _collection_problem(test_id: str, message: str, text: str) -> FailedTest:
    detail = _error_lines(text) or first_lines(text) or message
    path, line = _location(text, test_id)
    return FailedTest(test_id, "collection", f"collection error: {detail}", path or test_id, line)


def _error_lines(text: str) -> str:
    """The ``E   ...`` lines pytest uses for the exception itself."""
    lines = [m.group("text") for m in _ERROR_LINE.finditer(text)]
    return first_lines("\n".join(lines))


def _location(text: str, test_id: str) -> tuple[str | None, int | None]:
    """The last in-tree ``path.py:line:`` of the traceback, preferring the test's own file."""
    own_file = test_id.split("::", 1)[0]
    matches = [
        (m.group("path"), int(m.group("line")))
        for m in _LOCATION.finditer(text)
        if not m.group("path").startswith("/")
    ]
    own = [m for m in matches if m[0] == own_file]
    chosen = own or matches
    return chosen[-1] if chosen else (None, None)


def _test_id(case: ET.Element, root: Path) -> str:
    """The pytest node id, rebuilt from ``file``, ``classname`` and ``name``."""
    name = case.get("name", "")
    classname = case.get("classname", "")
    file = case.get("file")
    if not classname:  # a module that failed to collect: its name is the dotted module
        return file or _module_file(name.split("."), root)
    parts = classname.split(".")
    if file is None:
        file = _module_file(parts, root)
    module_parts = file.removesuffix(".py").split("/")
    classes = parts[len(module_parts) :] if parts[: len(module_parts)] == module_parts else []
    return "::".join([file, *classes, name])


def _module_file(parts: list[str], root: Path) -> str:
    """The longest prefix of ``parts`` that is a ``.py`` file under ``root``."""
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        if (root / candidate).is_file():
            return candidate
    return "/".join(parts) + ".py"
