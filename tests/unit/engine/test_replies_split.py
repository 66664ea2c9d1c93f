"""The pydantic reply models live in ``keel.engine.replies``; ``keel.engine.models`` (plain
enums and dataclasses) and the ports load no pydantic, yet still hand out the reply names."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from keel.engine import models, replies


def test_reply_names_stay_importable_from_models() -> None:
    from keel.engine.models import SCHEMA_NAMES, ArtifactBundle, PlanNode, TaskPlan

    assert TaskPlan is replies.TaskPlan
    assert PlanNode is replies.PlanNode
    assert ArtifactBundle is replies.ArtifactBundle
    assert SCHEMA_NAMES[TaskPlan] == "task_plan"


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'TaskPlans'"):
        _ = models.TaskPlans  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        exec("from keel.engine.models import Nonexistent")


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
    # and the reply models, asked for by name, do bring it
    lazy = probe.replace(
        "keel.engine.records\n", "keel.engine.records\nkeel.engine.models.PlanNode\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", lazy], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pydantic" in json.loads(out.stdout)
