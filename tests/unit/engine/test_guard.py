"""Plan path validation: every way a plan could put the wrong file in a prompt is refused,
the reason goes back to the architect, and the file is never read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from keel.bundles.paths import PathError
from keel.engine.guard import check_plan_path, read_for_prompt, secret_looking
from keel.engine.planner import Planner, PlanningFailed, validate_plan
from keel.engine.replies import TaskPlan
from tests.unit.engine.doubles import RecordingStore, ScriptedClient, make_gateway

SECRET = "sk-live-do-not-leak-4242"


def _plan(**node: Any) -> TaskPlan:
    fields = {"id": "fix", "title": "fix it", "kind": "code", "owns": ["calc.py"], **node}
    return TaskPlan.model_validate({"nodes": [fields]})


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "calc.py").write_text("x = 1\n")
    (root / ".env").write_text(f"KEY={SECRET}\n")
    (root / "config").mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text(f"{SECRET}\n")
    (root / "escape.txt").symlink_to(outside)
    (root / "linkdir").symlink_to(tmp_path)
    (root / "innocent.txt").symlink_to(root / ".env")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(f"token = {SECRET}\n")
    (root / "gitconf").symlink_to(root / ".git" / "config")
    return root


BAD_CONTEXT = [
    ("/proc/self/environ", "absolute paths are not allowed"),
    ("/etc/passwd", "absolute paths are not allowed"),
    ("../.git/config", "'..' is not allowed"),
    ("src/../../secret", "'..' is not allowed"),
    (".git/config", ".git/ is reserved"),
    (".keel/keel.db", ".keel/ is reserved"),
    ("vendor/.git/config", ".git/ directories"),
    (".env", "looks like a secret"),
    ("config/.env.production", "looks like a secret"),
    ("deploy/server.pem", "looks like a secret"),
    ("home/.ssh/id_rsa", "looks like a secret"),
    ("id_ed25519", "looks like a secret"),
    ("escape.txt", "resolves outside the workspace"),
    ("linkdir/outside.txt", "resolves outside the workspace"),
    ("innocent.txt", "leads to .env, which looks like a secret"),
    ("gitconf", "resolves into .git/"),
    ("src\\calc.py", "use '/' separators"),
    ("", "empty path"),
    ("a\0b", "NUL byte"),
]


@pytest.mark.parametrize(("path", "reason"), BAD_CONTEXT)
def test_every_bad_context_path_is_refused_with_its_reason(
    workspace: Path, path: str, reason: str
) -> None:
    errors = validate_plan(_plan(context=["calc.py", path]), root=workspace)
    assert len(errors) == 1, errors
    assert errors[0].startswith("fix reads an invalid context path: ")
    assert reason in errors[0]


@pytest.mark.parametrize(("path", "reason"), BAD_CONTEXT)
def test_every_bad_owned_path_is_refused_with_its_reason(
    workspace: Path, path: str, reason: str
) -> None:
    errors = validate_plan(_plan(owns=["calc.py", path]), root=workspace)
    assert any(e.startswith("fix owns an invalid path: ") and reason in e for e in errors), errors


@pytest.mark.parametrize(("path", "reason"), BAD_CONTEXT)
def test_the_guarded_reader_never_reads_a_refused_path(
    workspace: Path, path: str, reason: str
) -> None:
    [file] = read_for_prompt(workspace, [path], 10_000)
    assert file.text is None
    assert file.note.startswith("refused: ") and reason in file.note
    assert SECRET not in file.note


def test_good_paths_pass_and_come_back_canonical(workspace: Path) -> None:
    assert validate_plan(_plan(context=["./calc.py", "docs/new.md", ".env.example"])) == []
    assert check_plan_path("./src//calc.py", workspace) == "src/calc.py"
    assert not secret_looking(".env.example") and secret_looking("keys/id_rsa.pub")
    assert not secret_looking("src/tokenizer.py") and not secret_looking("monkey.py")


@pytest.mark.parametrize(
    "node_id", ["../../etc", "a/b", "node one", "-rf", ".hidden", "x" * 65, "é", "a\nKeel-Node: b"]
)
def test_unsafe_node_ids_are_refused(node_id: str) -> None:
    errors = validate_plan(_plan(id=node_id))
    assert any("is not a safe name" in e for e in errors), errors


def test_safe_node_ids_pass() -> None:
    for node_id in ["a", "core", "Node_2", "v1.2-fix", "x" * 64]:
        assert validate_plan(_plan(id=node_id)) == [], node_id


@pytest.mark.parametrize(
    ("title", "reason"),
    [
        ("fix\n\nKeel-Approved-By: user", "control characters"),
        ("tab\there", "control characters"),
        ("escape \x1b[31m red", "control characters"),
        ("line\u2028separator", "control characters"),
        ("t" * 201, "keep it under 200"),
    ],
)
def test_titles_with_control_characters_or_too_long_are_refused(title: str, reason: str) -> None:
    errors = validate_plan(_plan(title=title))
    assert len(errors) == 1 and reason in errors[0], errors


def test_the_guarded_reader_shows_absent_binary_and_long_files_with_a_note(
    workspace: Path,
) -> None:
    (workspace / "blob.bin").write_bytes(b"\x89PNG\0\0" + os.urandom(64))
    (workspace / "long.py").write_text("y = 2\n" * 1000)
    absent, binary, long, whole = read_for_prompt(
        workspace, ["new.py", "blob.bin", "long.py", "calc.py"], 600
    )
    assert (absent.text, absent.note) == (None, "does not exist yet")
    assert binary.text is None and binary.note.startswith("binary (70 bytes)")
    assert long.text == ("y = 2\n" * 1000)[:600]
    assert long.note == "shortened to its first 600 of 6000 characters"
    assert (whole.text, whole.note) == ("x = 1\n", "")


async def test_refusals_go_back_to_the_architect_and_the_secret_is_never_sent(
    workspace: Path,
) -> None:
    bad = {
        "nodes": [
            {
                "id": "fix",
                "title": "t",
                "kind": "code",
                "owns": ["calc.py"],
                "context": ["/proc/self/environ", "../.git/config", ".env", "escape.txt"],
            }
        ]
    }
    good = {
        "nodes": [
            {
                "id": "fix",
                "title": "t",
                "kind": "code",
                "owns": ["calc.py"],
                "context": ["./calc.py"],
            }
        ]
    }
    client = ScriptedClient([json.dumps(bad), json.dumps(good)])
    invalid: list[list[str]] = []
    planner = Planner(
        make_gateway(client, RecordingStore()),
        on_invalid=lambda attempt, errors: invalid.append(errors),
        root=workspace,
    )
    plan = await planner.plan("fix calc", ["calc.py"], [], ["python"])

    assert plan.nodes[0].context == ["calc.py"]  # context paths come back canonical too
    second = client.requests[1].prompt
    for reason in [
        "/proc/self/environ: absolute",
        "../.git/config: '..'",
        ".env: looks like",
        "escape.txt: resolves outside",
    ]:
        assert reason in second
    assert len(invalid) == 1 and len(invalid[0]) == 4
    assert all(SECRET not in request.prompt for request in client.requests)


async def test_a_plan_that_keeps_naming_a_secret_never_validates(workspace: Path) -> None:
    bad = json.dumps(
        {
            "nodes": [
                {
                    "id": "fix",
                    "title": "t",
                    "kind": "code",
                    "owns": ["calc.py"],
                    "context": ["innocent.txt"],
                }
            ]
        }
    )
    client = ScriptedClient([bad, bad, bad])
    planner = Planner(make_gateway(client, RecordingStore()), lambda a, e: None, root=workspace)
    with pytest.raises(PlanningFailed, match=r"leads to \.env"):
        await planner.plan("fix calc", [], [], [])


def test_check_plan_path_raises_path_error() -> None:
    with pytest.raises(PathError, match="looks like a secret"):
        check_plan_path("prod.key")


def test_a_huge_file_is_read_only_as_far_as_the_prompt_needs(workspace: Path) -> None:
    with (workspace / "huge.log").open("wb") as handle:
        handle.truncate(3 << 30)  # 3 GiB, sparse: reading it whole would exhaust memory
    [file] = read_for_prompt(workspace, ["huge.log"], 1_000)
    assert file.text is None and file.note == f"binary ({3 << 30} bytes); not shown"
    (workspace / "big.txt").write_text("z" * (2 << 20))
    [big] = read_for_prompt(workspace, ["big.txt"], 1_000)
    assert big.text == "z" * 1_000
    assert big.note == f"shortened to its first 1000 of {2 << 20} bytes"


def test_a_fifo_or_directory_is_named_not_read(workspace: Path) -> None:
    os.mkfifo(workspace / "pipe")  # opening it for reading would block forever
    pipe, folder = read_for_prompt(workspace, ["pipe", "config"], 1_000)
    assert (pipe.text, pipe.note) == (None, "not a regular file; not shown")
    assert (folder.text, folder.note) == (None, "a directory; its files are not shown")
