"""One record of every event kind, with every optional key set, for the event tests."""

from __future__ import annotations

from keel.engine import events as ev

HEAD = "5b1161cb2048e0c1d2a3b4c5d6e7f8091a2b3c4d"
OLD = {
    "component": "log",
    "source": "pytest",
    "test_id": "tests/test_legacy.py::test_legacy",
    "message": "AssertionError: known broken",
    "magnitude": 1.0,
    "baseline": True,
    "baseline_at": HEAD,
}
ENERGY = {"v_syn": 0.0, "v_str": 0.0, "v_log": 2.0, "v_boot": 1.0, "v_sheaf": 0.0, "v": 3.0}

STARTED = ev.SessionStarted(
    task="add divide",
    workspace="/w",
    models={"architect": "openai:m", "actuator": "openai:m"},
    plugins=["python"],
    mode="balanced",
    epsilon=0.1,
    sandbox={"mode": "bubblewrap", "version": "0.9.0", "network": False},
    environment={"python": {"interpreter": "/w/.venv/bin/python", "source": ".venv"}},
    instructions=["AGENTS.md"],
)

SAMPLES: list[ev.Event] = [
    STARTED,
    ev.SessionResumed(
        task=STARTED.task,
        workspace=STARTED.workspace,
        models=STARTED.models,
        plugins=STARTED.plugins,
        mode=STARTED.mode,
        epsilon=STARTED.epsilon,
        sandbox={"mode": "off", "warning": "commands run unconfined"},
        environment={},
        instructions=[],
    ),
    ev.PlanInvalid(attempt=1, errors=["nodes: field required"]),
    ev.PlanFailed(reason="no valid plan after 3 attempts"),
    ev.Explore(
        tool="open_file", arguments={"path": "a.py", "start": 3}, chars=80, refused=False, tier="a"
    ),
    ev.PlanReady(nodes=[ev.PlannedNode("node-1", "calc", "code", ["calc.py"], [])]),
    ev.BaselineEvent(
        head=HEAD,
        reused=False,
        files=["calc.py"],
        measured=["calc.py"],
        failing=1,
        degraded=[],
        evidence=[OLD],
    ),
    ev.WarningEvent(message="speculator unavailable: timeout"),
    ev.NodeStarted(node="node-1", title="calc", kind="code"),
    ev.BundleGenerated(
        node="node-1", attempt=1, files=["calc.py"], commands=["pytest -q"], problems=[]
    ),
    ev.Verification(
        node="node-1",
        attempt=1,
        **ENERGY,
        epsilon=0.1,
        stable=False,
        degraded=["ty"],
        evidence=[OLD],
    ),
    ev.Verification(
        node=None, stage="sheaf", **ENERGY, epsilon=0.1, stable=True, degraded=[], evidence=[]
    ),
    ev.NodeRetrying(node="node-1", attempt=2, v=3.0),
    ev.AwaitingApproval(
        node="node-1", bundle="0123abcd", title="calc", complexity=3, files=["calc.py"], **ENERGY
    ),
    ev.BundleRejected(node="node-1", bundle="0123abcd", feedback="use Decimal"),
    ev.BundleEdited(node="node-1", files=["calc.py"], dropped=[], feedback="typo"),
    ev.BundleRebased(node="node-1", files=["calc.py"], conflicts=[]),
    ev.BundlePartiallyCommitted(node="node-1", ledger="f" * 40, files=["calc.py"], v=0.0),
    ev.HunksVerified(
        node="node-1",
        bundle="0123abcd",
        hunks=["3f9a1c0b7d2e"],
        v=1.5,
        stable=False,
        evidence=[OLD],
    ),
    ev.HunksRejected(
        node="node-1", bundle="0123abcd", hunks=["3f9a1c0b7d2e"], remaining=1, feedback="no"
    ),
    ev.NodeCommitted(node="node-1", ledger="e" * 40, files=["calc.py"], v=None, recovered=True),
    ev.LedgerRefused(node="node-1", bundle="0123abcd", reason="pre-commit hook", output="no"),
    ev.NodeEscalated(
        node="node-1",
        title="calc",
        attempts=3,
        energy=ENERGY,
        evidence=[OLD],
        degraded=[],
        reason="did not reach V < epsilon within the attempts",
    ),
    ev.NodeFailed(node="node-2", reason="node-1 did not commit"),
    ev.NodeWaiting(node="node-2", reason="node-1 awaits approval"),
    ev.NodesReopened(nodes=["node-1"], v_sheaf=1.0),
    ev.BudgetExceededEvent(
        reason="max_cost",
        message="the cost budget is spent",
        calls=4,
        input_tokens=900,
        output_tokens=80,
        cost_usd=0.25,
        unpriced=1,
    ),
    # Kinds added later go before the last, so the indices above stay put.
    ev.PlanRepaired(attempt=1, repairs=["n2 and n1 owned the same file (a.py): merged into n1"]),
    ev.FileAdopted(node="n1", attempt=1, path="test_a.py"),
    ev.SessionFinished(
        outcome="partial",
        reason="not committed: node-2 (failed)",
        budget_exceeded=False,
        totals=ev.SessionTotals(
            calls=4,
            input_tokens=900,
            output_tokens=80,
            cost_usd=0.25,
            unpriced=1,
            wall_time_s=12.5,
            nodes=2,
            committed=1,
        ),
        nodes={"node-1": "committed", "node-2": "failed"},
    ),
]
