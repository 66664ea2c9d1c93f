"""The pydantic reply models live in ``keel.engine.replies``; ``keel.engine.models`` (plain
enums and dataclasses), the ports, the events and the records load no pydantic."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_records_and_ports_load_no_pydantic() -> None:
    probe = (
        "import json, sys\n"
        "import keel.engine.models, keel.engine.ports, keel.engine.events, keel.engine.records\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'"
        " or m in ('keel.engine.replies', 'keel.bundles.model'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []
    # and the reply models do bring it (the probe would see an import that sneaks in)
    lazy = probe.replace("keel.engine.records\n", "keel.engine.records, keel.engine.replies\n")
    out = subprocess.run(
        [sys.executable, "-c", lazy], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pydantic" in json.loads(out.stdout)
