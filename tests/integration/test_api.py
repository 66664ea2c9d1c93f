"""The execution API end to end: a real ``python -m keel.api`` process, real HTTP through
``keel.client``, the real engine, git and store, and the fake model server behind the real SDK.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.client import ApiError, Event, KeelClient
from tests.fakes.model_server import FakeModelServer
from tests.integration.api_server import TOKEN, ApiServer
from tests.integration.conftest import bundle, git, node, plan
from tests.integration.small_session import (
    MODEL,
    init_workspace,
    keel_env,
    small_entries,
    subjects,
    tree,
)

TASK = "Write the release notes"
FOLLOW_UP = "Add a line to the notes"


def first_entries() -> list[dict[str, Any]]:
    nodes = [
        node("node-1", ["notes.txt"], title="Notes"),
        node("node-2", ["more.txt"], depends_on=["node-1"], title="More notes"),
    ]
    return [
        plan(*nodes),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("node-1", writes={"notes.txt": "alpha\n"}),
        bundle("node-2", writes={"more.txt": "beta\n"}),
    ]


def follow_up_entries() -> list[dict[str, Any]]:
    return [
        plan(node("node-1", ["notes.txt"], title="Revise the notes")),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("node-1", writes={"notes.txt": "alpha\nrevised\n"}),
    ]


def approving(client: KeelClient, session: str, events: Iterator[Event]) -> list[Event]:
    """Read ``events`` to the end, approving every bundle that awaits approval."""
    seen = []
    for event in events:
        seen.append(event)
        if event.type == "awaiting_approval":
            answer = client.approve(session, event.data["bundle"])
            assert answer["decision"] == "approved" and answer["ledgerEntry"]
    return seen


def stored_event_ids(workspace: Path, session: str) -> list[int]:
    db = sqlite3.connect(f"file:{workspace / '.keel' / 'keel.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id FROM events WHERE session_id = ? ORDER BY id", (session,))
        return [int(row[0]) for row in rows]
    finally:
        db.close()


def test_cautious_session_reconnect_approve_then_continue(tmp_path: Path) -> None:
    roots = tmp_path / "roots"
    roots.mkdir()
    workspace = init_workspace(roots / "ws")
    with (
        FakeModelServer(first_entries()) as model,
        ApiServer([roots], keel_env(model, tmp_path)) as api,
    ):
        client = api.client()
        session = client.start(TASK, workspace=str(workspace), model=MODEL, mode="cautious")

        # Stream until the first bundle awaits approval, then drop the connection.
        stream = client.events(session)
        seen: list[Event] = []
        for event in stream:
            seen.append(event)
            if event.type == "awaiting_approval":
                break
        stream.close()
        assert seen[0].type == "session_started" and seen[0].data["mode"] == "cautious"
        pending = client.session(session)
        assert pending["state"] == "awaiting_approval"
        assert [p["bundle"] for p in pending["pending"]] == [seen[-1].data["bundle"]]
        diff = client.diff(session, seen[-1].data["bundle"])
        assert "+alpha" in diff and "notes.txt" in diff
        assert git(workspace, "log", "--format=%s").splitlines() == ["initial commit"]

        # Approve while nobody listens; reconnect with Last-Event-ID and approve the rest.
        answer = client.approve(session, seen[-1].data["bundle"])
        assert answer["committed"] == ["notes.txt"]
        seen += approving(client, session, client.events(session, last_event_id=seen[-1].id))

        ids = [event.id for event in seen]
        assert ids == sorted(set(ids)), "an event was repeated or out of order"
        assert ids == stored_event_ids(workspace, session), "an event was lost"
        assert seen[-1].type == "session_finished"
        assert seen[-1].data["outcome"] == "success"
        assert [e.data["node"] for e in seen if e.type == "node_committed"] == [
            "node-1",
            "node-2",
        ]
        # A finished session's stream replays everything and ends.
        replay = list(client.events(session))
        assert [(e.id, e.type, e.data) for e in replay] == [(e.id, e.type, e.data) for e in seen]
        summary = client.session(session)
        assert summary["state"] == "finished" and summary["outcome"] == "success"
        assert summary["ledger_entries"] == 2 and summary["workspace"] == str(workspace)

        # A follow-up that changes a file of the first session.
        model.load(follow_up_entries())
        before = len(model.requests)
        follow = client.continue_session(session, FOLLOW_UP, max_cost=2.5)
        assert follow != session
        later = approving(client, follow, client.events(follow))
        assert later[-1].type == "session_finished" and later[-1].data["outcome"] == "success"
        assert git(workspace, "show", "HEAD:notes.txt") == "alpha\nrevised\n"
        assert (workspace / "more.txt").read_text() == "beta\n"
        entries = client.ledger(str(workspace))
        assert [e["session"] for e in entries] == [follow, session, session]
        summary = client.session(follow)
        assert summary["continues"] == session and summary["mode"] == "cautious"
        assert summary["budget"]["max_steps"] == 100  # kept; not lifted by the follow-up
        assert summary["budget"]["max_cost"] == 2.5

        # The architect planned the follow-up with the first session in view.
        architect = [
            r
            for r in model.requests[before:]
            if r.method == "POST" and r.headers.get("X-Keel-Tier") == "architect"
        ]
        prompt = json.dumps(architect[0].body)
        assert FOLLOW_UP in prompt and f"follows up session {session}" in prompt
        assert "Its outcome: success" in prompt and "More notes" in prompt
        assert entries[1]["sha"][:12] in prompt and entries[2]["sha"][:12] in prompt
    assert api.stopped_cleanly, "SIGTERM did not stop the server:\n" + "\n".join(api.log)


def run_to_end(client: KeelClient, session: str) -> list[Event]:
    events = list(client.events(session))
    assert events[-1].type == "session_finished", [e.type for e in events]
    return events


def test_a_killed_server_resumes_to_the_same_tree_and_ledger(tmp_path: Path) -> None:
    roots = tmp_path / "roots"
    roots.mkdir()
    straight = init_workspace(roots / "straight")
    killed = init_workspace(roots / "killed")
    with FakeModelServer(small_entries()) as model:
        env = keel_env(model, tmp_path)
        with ApiServer([roots], env) as api:
            client = api.client()
            done = client.start(TASK, workspace=str(straight), model=MODEL, mode="yolo")
            assert run_to_end(client, done)[-1].data["outcome"] == "success"

        # The second commit kills the server after git has it and before the store does.
        with ApiServer([roots], {**env, "KEEL_FAULT": "node_ledger_committed:2"}) as api:
            session = api.client().start(TASK, workspace=str(killed), model=MODEL, mode="yolo")
            assert api.wait() == -9
        assert len(subjects(killed)) == 3  # initial commit and two nodes

        with ApiServer([roots], env) as api:
            client = api.client()
            listed = {s["id"]: s for s in client.sessions(str(killed))}
            assert listed[session]["state"] == "interrupted"
            assert listed[session]["outcome"] is None
            assert client.resume(session) == session
            events = run_to_end(client, session)
            assert events[-1].data["outcome"] == "success"
            assert client.session(session)["state"] == "finished"
    assert tree(killed) == tree(straight)
    assert subjects(killed) == subjects(straight)
    ids = stored_event_ids(killed, session)
    assert ids == sorted(set(ids))


@pytest.fixture
def waiting(tmp_path: Path) -> Iterator[tuple[ApiServer, Path, str, FakeModelServer]]:
    """A server whose one cautious session waits for the approval of its first bundle."""
    roots = tmp_path / "roots"
    roots.mkdir()
    workspace = init_workspace(roots / "ws")
    (tmp_path / "outside").mkdir()
    with (
        FakeModelServer(first_entries()) as model,
        ApiServer([roots], keel_env(model, tmp_path)) as api,
    ):
        client = api.client()
        session = client.start(TASK, workspace=str(workspace), model=MODEL, mode="cautious")
        for event in client.events(session):
            if event.type == "awaiting_approval":
                break
        yield api, workspace, session, model


def refused(call: Any, status: int, words: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.status == status, caught.value
    assert words in caught.value.message, caught.value.message
    return caught.value


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    waiting: tuple[ApiServer, Path, str, FakeModelServer], tmp_path: Path
) -> None:
    api, workspace, session, _ = waiting
    client = api.client()
    head = git(workspace, "rev-parse", "HEAD")
    bundle_id = client.session(session)["pending"][0]["bundle"]

    # No token, a wrong one, one of another length: 401 on every route.
    refused(lambda: api.client("").sessions(), 401, "token")
    refused(lambda: api.client("x" * 27).session(session), 401, "valid API token")
    refused(lambda: api.client("short").openapi(), 401, "valid API token")
    refused(lambda: api.client("wrong").approve(session, bundle_id), 401, "token")

    # Malformed JSON, a body that is not an object, unknown and invalid fields.
    raw = RawClient(api)
    assert raw.post("/sessions", b"{not json") == (400, "bad_json")
    assert raw.post("/sessions", b"[1, 2]") == (400, "bad_json")
    assert raw.post(
        "/sessions", json.dumps({"task": "x", "workspace": str(workspace), "rm": 1}).encode()
    ) == (400, "bad_request")
    refused(lambda: client.start("", workspace=str(workspace)), 400, "task")
    refused(lambda: client.start("t", workspace=str(workspace), mode="reckless"), 400, "mode")
    refused(lambda: client.start("t", workspace=str(workspace), max_steps=0), 400, "maxSteps")
    assert raw.post("/sessions", b"x" * (65 * 1024)) == (413, "too_large")

    # Unknown ids.
    refused(lambda: client.session("s-nope"), 404, "no session s-nope")
    refused(lambda: list(client.events("s-nope")), 404, "no session")
    refused(lambda: client.approve(session, "0" * 16), 404, "no bundle")
    refused(lambda: client.diff(session, "f" * 16), 404, "no bundle")
    refused(lambda: client.approve(session, bundle_id, files=["nope.txt"]), 400, "nope.txt")
    refused(lambda: client.correct(session, bundle_id, ""), 400, "feedback")
    assert raw.get(f"/sessions/{session}/events", {"Last-Event-ID": "abc"}) == (400, "bad_request")

    # Workspaces outside the allowed roots: directly, by .., by a symlink; and a missing one.
    outside = tmp_path / "outside"
    refused(lambda: client.start("t", workspace=str(outside)), 403, "outside the allowed roots")
    dotted = str(workspace / ".." / ".." / "outside")
    refused(lambda: client.start("t", workspace=dotted), 403, "outside the allowed roots")
    (workspace.parent / "link").symlink_to(outside)
    link = str(workspace.parent / "link")
    refused(lambda: client.start("t", workspace=link), 403, "outside the allowed roots")
    refused(lambda: client.start("t", workspace="relative/ws"), 400, "absolute")
    missing = str(workspace.parent / "missing")
    refused(lambda: client.start("t", workspace=missing), 400, "no such directory")
    refused(lambda: client.ledger(str(outside)), 403, "outside the allowed roots")

    # A second start in the workspace, a continue or resume of a running session.
    refused(lambda: client.start("again", workspace=str(workspace)), 409, "already running")
    refused(lambda: client.continue_session(session, "more"), 409, "running")
    refused(lambda: client.resume(session), 409, "running")

    # Nothing changed: one session, no commit, the bundle still waits.
    assert [s["id"] for s in client.sessions()] == [session]
    assert git(workspace, "rev-parse", "HEAD") == head
    assert not (workspace / "notes.txt").exists()
    assert not outside.joinpath(".keel").exists()
    assert not (workspace.parent / "missing").exists()
    assert client.session(session)["pending"][0]["bundle"] == bundle_id
    assert client.abort(session)["outcome"] == "aborted"
    refused(lambda: client.abort(session), 409, "not running")


def test_the_cli_lock_refuses_an_api_start(tmp_path: Path) -> None:
    from keel.store.lock import WorkspaceLock

    roots = tmp_path / "roots"
    roots.mkdir()
    workspace = init_workspace(roots / "ws")
    with (
        FakeModelServer(first_entries()) as model,
        ApiServer([roots], keel_env(model, tmp_path)) as api,
        WorkspaceLock(workspace / ".keel"),
    ):
        refused(
            lambda: api.client().start(TASK, workspace=str(workspace), model=MODEL),
            409,
            "another Keel session is running",
        )
        assert model.requests == []


class RawClient:
    """Requests the typed client cannot make (broken bodies, bad headers)."""

    def __init__(self, api: ApiServer) -> None:
        self._api = api

    def post(self, path: str, data: bytes) -> tuple[int, str]:
        return self._send("POST", path, data, {"Content-Type": "application/json"})

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, str]:
        return self._send("GET", path, None, headers)

    def _send(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self._api.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._api.token}")
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, ""
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())["error"]["code"]


def test_a_correction_reaches_the_next_attempt(tmp_path: Path) -> None:
    roots = tmp_path / "roots"
    roots.mkdir()
    workspace = init_workspace(roots / "ws")
    entries = [*first_entries(), bundle("node-1", 2, writes={"notes.txt": "alpha, corrected\n"})]
    with FakeModelServer(entries) as model, ApiServer([roots], keel_env(model, tmp_path)) as api:
        client = api.client()
        session = client.start(TASK, workspace=str(workspace), model=MODEL, mode="cautious")
        seen: list[Event] = []
        corrected = False
        for event in client.events(session):
            seen.append(event)
            if event.type != "awaiting_approval":
                continue
            if not corrected:
                answer = client.correct(session, event.data["bundle"], "say it is corrected")
                assert answer["decision"] == "corrected"
                refused(lambda b=event.data["bundle"]: client.approve(session, b), 404, "no bundle")
                corrected = True
            else:
                client.approve(session, event.data["bundle"])
        kinds = [e.type for e in seen]
        assert kinds.count("bundle_rejected") == 1 and kinds.count("node_committed") == 2
        rejected = next(e for e in seen if e.type == "bundle_rejected")
        assert rejected.data["feedback"] == "say it is corrected"
        assert seen[-1].data["outcome"] == "success"
        assert git(workspace, "show", "HEAD~1:notes.txt") == "alpha, corrected\n"
        second = [
            r
            for r in model.requests
            if r.method == "POST"
            and r.headers.get("X-Keel-Node") == "node-1"
            and r.headers.get("X-Keel-Attempt") == "2"
        ]
        asked = json.dumps(second[0].body)
        assert "say it is corrected" in asked
        assert "alpha" in asked  # the correction builds on the proposal: it is shown
    assert api.stopped_cleanly


def test_a_terminal_session_is_streamed_and_aborted_through_the_api(tmp_path: Path) -> None:
    import subprocess

    from tests.integration.conftest import KEEL

    roots = tmp_path / "roots"
    roots.mkdir()
    workspace = init_workspace(roots / "ws")
    with FakeModelServer(first_entries()) as model:
        model.hang_on("actuator", "node-1", 1)  # the terminal's session waits on the model
        env = keel_env(model, tmp_path)
        agent = subprocess.Popen(
            [*KEEL, "agent", "-y", "--json", "--model", MODEL, "-w", str(workspace), TASK],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            model.wait_for_requests(3, timeout=60)  # plan, speculation, node-1 (hanging)
            with ApiServer([roots], env) as api:
                client = api.client()
                (listed,) = client.sessions(str(workspace))
                assert listed["state"] == "running_elsewhere"
                session = listed["id"]
                refused(lambda: client.start("t", workspace=str(workspace)), 409, "another")
                stream = client.events(session)
                first = next(stream)
                assert first.type == "session_started"
                assert client.abort(session)["signalled"] == [agent.pid]
                rest = list(stream)
                assert rest[-1].type == "session_finished"
                assert rest[-1].data["outcome"] == "aborted"
                ids = [first.id] + [e.id for e in rest]
                assert ids == stored_event_ids(workspace, session)
            assert api.stopped_cleanly
            assert agent.wait(timeout=60) == 130
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()


def test_sessions_in_two_workspaces_run_at_once(tmp_path: Path) -> None:
    roots = tmp_path / "roots"
    roots.mkdir()
    first = init_workspace(roots / "one")
    second = init_workspace(roots / "two")
    with (
        FakeModelServer(first_entries()) as model,
        ApiServer([roots], keel_env(model, tmp_path)) as api,
    ):
        client = api.client()
        sessions = [
            client.start(TASK, workspace=str(ws), model=MODEL, mode="cautious")
            for ws in (first, second)
        ]
        streams = [client.events(s) for s in sessions]
        for stream in streams:  # both wait for a decision at the same time
            assert any(e.type == "awaiting_approval" for e in stream)
        states = {s["id"]: s["state"] for s in client.sessions()}
        assert states == dict.fromkeys(sessions, "awaiting_approval")
        for session, stream in zip(sessions, streams, strict=True):
            pending = client.session(session)["pending"]
            client.approve(session, pending[0]["bundle"])
            rest = approving(client, session, stream)
            assert rest[-1].data["outcome"] == "success"
    for ws in (first, second):
        assert git(ws, "show", "HEAD:more.txt") == "beta\n"
        assert len(subjects(ws)) == 3


def _get(url: str, token: str | None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_keel_dashboard_serves_the_api_only_with_its_token(tmp_path: Path) -> None:
    roots = tmp_path / "roots"
    roots.mkdir()
    env = keel_env_without_model(tmp_path)
    with ApiServer([roots], env) as api:
        assert any("API at " + api.url in line for line in api.log), api.log
        status, body = _get(api.url + "/openapi.json", api.token)
        assert status == 200
        document = json.loads(body)
        assert document["openapi"].startswith("3.") and "/sessions" in document["paths"]
        status, body = _get(api.url + "/openapi.json", None)
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
        assert _get(api.url + "/openapi.json", "x" * len(api.token))[0] == 401
        assert _get(api.dashboard_url, None)[0] == 200  # the dashboard itself is unchanged
    assert api.stopped_cleanly

    # Without the token variable the dashboard serves no API at all.
    with ApiServer([roots], env, token=None) as bare:
        assert not any("API at" in line for line in bare.log), bare.log
        assert _get(bare.url + "/openapi.json", TOKEN)[0] == 404
        assert _get(bare.dashboard_url, None)[0] == 200


def test_keel_dashboard_refuses_a_short_api_token(tmp_path: Path) -> None:
    import subprocess

    from tests.integration.conftest import KEEL

    env = {**keel_env_without_model(tmp_path), "KEEL_API_TOKEN": "short"}
    done = subprocess.run(
        [*KEEL, "dashboard", "--port", "0", "-w", str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "KEEL_API_TOKEN must be at least 16 characters" in done.stderr
    assert "short" not in done.stderr.replace("KEEL_API_TOKEN", "")


def test_the_development_server_serves_the_same_api(tmp_path: Path) -> None:
    roots = tmp_path / "roots"
    roots.mkdir()
    env = keel_env_without_model(tmp_path)
    with ApiServer([roots], env, dev=True) as dev:
        status, body = _get(dev.url + "/openapi.json", dev.token)
        assert status == 200 and "/sessions" in json.loads(body)["paths"]
        assert _get(dev.url + "/openapi.json", None)[0] == 401
        assert dev.client().sessions() == []
    assert dev.stopped_cleanly


def keel_env_without_model(home: Path) -> dict[str, str]:
    """A ``keel`` environment with no user configuration and no KEEL_* variables."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
    )
    return env


def test_hunks_are_approved_and_rejected_through_the_api(tmp_path: Path) -> None:
    """A hunk approved alone is committed alone; the rest comes back with its id; a rejected
    hunk and its reason reach the model's next attempt; bad ids are refused."""
    roots = tmp_path / "roots"
    roots.mkdir()
    workspace = init_workspace(roots / "ws")
    (workspace / "notes.txt").write_text("one\ntwo\nthree\nfour\n")
    git(workspace, "add", "notes.txt")
    git(workspace, "commit", "-qm", "notes")
    entries = [
        plan(node("node-1", ["notes.txt"], title="Notes")),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("node-1", writes={"notes.txt": "ONE\ntwo\nthree\nFOUR\n"}),
        bundle("node-1", 2, writes={"notes.txt": "ONE\ntwo\nthree\nfour\nfive\n"}),
    ]
    with FakeModelServer(entries) as model, ApiServer([roots], keel_env(model, tmp_path)) as api:
        client = api.client()
        session = client.start(TASK, workspace=str(workspace), model=MODEL, mode="cautious")
        proposals: list[str] = []
        ids: dict[str, str] = {}
        seen: list[Event] = []
        for event in client.events(session):
            seen.append(event)
            if event.type != "awaiting_approval":
                continue
            bundle_id = event.data["bundle"]
            proposals.append(bundle_id)
            (changed,) = client.diff_files(session, bundle_id)["files"]
            hunks = {h["added"][0] if h["added"] else "": h["id"] for h in changed["hunks"]}
            if len(proposals) == 1:
                assert list(hunks) == ["ONE", "FOUR"]
                ids.update(hunks)
                refused(
                    lambda b=bundle_id: client.approve(session, b, hunks=["0badc0ffee00"]),
                    400,
                    f"no hunk 0badc0ffee00 in bundle {bundle_id} (its hunks: {ids['ONE']}",
                )
                refused(
                    lambda b=bundle_id: client.reject(session, b, hunks=[ids["ONE"]] * 2),
                    400,
                    "hunk ids given twice",
                )
                refused(
                    lambda b=bundle_id: client.approve(
                        session, b, files=["notes.txt"], hunks=[ids["ONE"]]
                    ),
                    400,
                    "files or hunks, not both",
                )
                refused(lambda b=bundle_id: client.approve(session, b, hunks=[]), 400, "hunks")
                answer = client.approve(session, bundle_id, hunks=[ids["ONE"]])
                assert answer["committed"] == ["notes.txt"]
                assert git(workspace, "show", "HEAD:notes.txt") == "ONE\ntwo\nthree\nfour\n"
            elif len(proposals) == 2:
                assert hunks == {"FOUR": ids["FOUR"]}  # the rest, with its id
                answer = client.reject(session, bundle_id, "keep four", hunks=[ids["FOUR"]])
                assert answer["decision"] == "rejected"
            else:
                client.approve(session, bundle_id)
        assert len(set(proposals)) == 3 and seen[-1].data["outcome"] == "success"
        assert git(workspace, "show", "HEAD:notes.txt") == "ONE\ntwo\nthree\nfour\nfive\n"
        second = [
            r
            for r in model.requests
            if r.method == "POST"
            and r.headers.get("X-Keel-Node") == "node-1"
            and r.headers.get("X-Keel-Tier") == "actuator"
            and r.headers.get("X-Keel-Attempt") == "2"
        ]
        text = json.dumps(second[0].body)
        assert "-four" in text and "+FOUR" in text and "Reason: keep four" in text
    assert api.stopped_cleanly
