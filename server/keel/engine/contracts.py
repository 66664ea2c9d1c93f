"""V_str: the node's structural promises, checked on the files it owns after its bundle.

Ownership is enforced before application (a write outside ``owns`` is refused with a
residual); here the rest: every owned file exists (unless the bundle deletes it on purpose),
every contract symbol is defined, no forbidden pattern appears.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from keel.engine.models import Component, Residual, SensorReport
from keel.engine.replies import PlanNode

_DEFINERS = (
    r"(?:def|class|fn|struct|enum|trait|type|const|static|let|function|interface|async\s+def)"
)


def _defines(text: str, symbol: str) -> bool:
    name = re.escape(symbol)
    patterns = (
        rf"^\s*(?:pub(?:\([^)]*\))?\s+)?{_DEFINERS}\s+{name}\b",  # def add / pub fn add / class Add
        rf"^\s*{name}\s*(?::[^=\n]*)?=",  # add = ... / add: int = ...
        rf"^\s*from\s+\S+\s+import\s+[^(\n]*\b{name}\b",  # re-exported by import
        rf"^\s*from\s+\S+\s+import\s*\([^)]*\b{name}\b",  # ... in parentheses, over lines
    )
    return any(re.search(p, text, flags=re.MULTILINE) for p in patterns)


#: The residual of an owned file the bundle did not write.
OWNED_MISSING = "owned file was not created: put it in the bundle's writes with its full content"


def check_contract(
    node: PlanNode, owned: Mapping[str, str | None], deleted: Iterable[str] = ()
) -> SensorReport:
    """Residuals for missing owned files, undefined symbols and forbidden patterns.

    A file in ``deleted`` is absent because the bundle deletes it: that is not missing.
    """
    residuals: list[Residual] = []
    gone = set(deleted)
    for path, text in owned.items():
        if text is None and path not in gone:
            residuals.append(Residual(Component.STR, OWNED_MISSING, "contract", path=path))
    texts = {path: text for path, text in owned.items() if text is not None}
    where = ", ".join(texts) or "any owned file"
    for symbol in node.contract.symbols:
        if not any(_defines(text, symbol) for text in texts.values()):
            residuals.append(
                Residual(
                    Component.STR,
                    f"contract symbol '{symbol}' is not defined in {where} (define it at "
                    "the top level of an owned file, e.g. `def "
                    f"{symbol}(...)` or `class {symbol}`)",
                    "contract",
                )
            )
    for pattern in node.contract.forbidden:
        for path, text in texts.items():
            for number, line in enumerate(text.splitlines(), start=1):
                if pattern in line:
                    residuals.append(
                        Residual(
                            Component.STR,
                            f"forbidden pattern '{pattern}' present",
                            "contract",
                            path=path,
                            line=number,
                        )
                    )
                    break
    return SensorReport("contract", tuple(residuals))
