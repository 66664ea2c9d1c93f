"""``keel replay``: a stored session re-run offline from its recorded replies reproduces it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.integration.conftest import KEEL, git, json_events
from tests.integration.small_session import SmallRun, run, subjects, tree


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """No API key and an unreachable endpoint: a replay must not need either."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "OPENAI_"))}
    return {
        **env,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / ".c"),
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    }


def test_replay_reproduces_the_session_offline(small_run: SmallRun, tmp_path: Path) -> None:
    into = tmp_path / "again"
    replay = [*KEEL, "replay", small_run.session, "-w", str(small_run.workspace)]
    proc = run([*replay, "--into", str(into), "--json"], _offline_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert f"replaying {small_run.session} in {into}" in proc.stderr
    events = json_events(proc.stdout)
    finished = events[-1]
    assert finished["outcome"] == "success"
    assert events[0]["session"] != small_run.session  # a new session of its own
    # the same plan, bundles and ledger: the same tree and commits on the same start
    assert tree(into) == small_run.tree
    assert subjects(into)[:3] == small_run.subjects[:3]
    assert subjects(into)[3].startswith("keel replay: the tree of")
    assert git(into, "show", "HEAD~3:README.md") == "# Release notes\n"
    # the recorded usage travels with the replies, so the account is the same too
    original = small_run.events[-1]["totals"]
    for key in ("calls", "input_tokens", "output_tokens", "cost_usd"):
        assert finished["totals"][key] == original[key]
    assert git(into, "status", "--porcelain", "--ignored") == "!! .keel/\n"
    assert subjects(small_run.workspace) == small_run.subjects  # the original is untouched


def test_replay_transcript_only_writes_the_transcript(small_run: SmallRun, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    proc = run(
        [*KEEL, "replay", "--last", "-w", str(small_run.workspace), "--transcript", str(out)],
        _offline_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    header, entries = lines[0], lines[1:]
    assert header["keel_transcript"] == 1 and small_run.session in header["note"]
    keys = {(e["tier"], e["node"], e["attempt"]) for e in entries}
    assert keys == set(small_run.counts)
    assert all(e["model"] == "openai:gpt-4.1" for e in entries)
    assert all(e["usage"] == {"input_tokens": 1000, "output_tokens": 100} for e in entries)
    fix = next(e for e in entries if e["node"] == "node-2" and e["attempt"] == 2)
    assert json.loads(fix["text"])["writes"] == [{"path": "c.txt", "content": "gamma\n"}]
    assert not (small_run.workspace.parent / f"ws-replay-{small_run.session}").exists()


def test_replay_refuses_a_directory_that_is_not_empty(small_run: SmallRun, tmp_path: Path) -> None:
    into = tmp_path / "busy"
    into.mkdir()
    (into / "mine.txt").write_text("keep me\n")
    proc = run(
        [*KEEL, "replay", "-w", str(small_run.workspace), "--into", str(into)],
        _offline_env(tmp_path),
    )
    assert proc.returncode == 2
    assert "is not empty" in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in into.iterdir()] == ["mine.txt"]
