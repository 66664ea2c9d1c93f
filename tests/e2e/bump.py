"""A one-node session that bumps ``VERSION`` in a committed ``calc.py``: the smallest real
edit of an existing file, shared by the approval and evidence tests."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Starter
from tests.e2e.editor import Keel, git
from tests.integration.conftest import bundle, node, plan

BASE = "def add(a, b):\n    return a + b\n\n\nVERSION = 1\n"
BUMP = "--- a/calc.py\n+++ b/calc.py\n@@ -3,3 +3,3 @@\n \n \n-VERSION = 1\n+VERSION = 2\n"


async def start_bump(start_keel: Starter, workspace: Path) -> Keel:
    """``calc.py`` committed with :data:`BASE` and open in the editor; the server started."""
    (workspace / "calc.py").write_text(BASE)
    git(workspace, "add", "calc.py")
    git(workspace, "commit", "-q", "-m", "calc")
    keel: Keel = await start_keel(
        [plan(node("node-1", ["calc.py"], title="Bump")), bundle("node-1", diffs={"calc.py": BUMP})]
    )
    keel.open("calc.py", BASE)
    return keel
