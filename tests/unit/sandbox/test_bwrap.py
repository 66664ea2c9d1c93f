"""The bubblewrap sandbox with real bwrap and real processes: what a command can and cannot do.

Each test gives a workspace with a ``.git/`` and ``.keel/sandboxes/<node>`` (the layout of a
session), runs a command in the node's sandbox directory and checks the boundary from outside.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from keel.engine.ports import KeelError, Sandbox
from keel.plugins.python import PythonPlugin
from keel.process import NOT_FOUND_EXIT_CODE, SubprocessRunner
from keel.sandbox import (
    FIX,
    OFF_WARNING,
    BwrapSandbox,
    SandboxOptions,
    SandboxUnavailable,
    Unconfined,
    open_sandbox,
)

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

SECRET = "sk-test-sandbox-secret-0123456789"


class Layout:
    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.workspace = root / "ws"
        self.outside = root / "outside"
        self.node = self.workspace / ".keel" / "sandboxes" / "s-1" / "node-1" / "1"
        for path in (self.home, self.outside, self.node, self.workspace / ".git" / "hooks"):
            path.mkdir(parents=True)
        (self.workspace / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
        (self.home / ".gitconfig").write_text("[user]\n\tname = me\n")

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "HOME": str(self.home), "OPENAI_API_KEY": SECRET}

    def sandbox(self, **options: object) -> Sandbox:
        return open_sandbox("auto", self.workspace, SandboxOptions(**options), self.env())  # type: ignore[arg-type]

    def runner(self, **options: object) -> SubprocessRunner:
        env = self.env()
        path = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
        return SubprocessRunner(
            base_env=env, extra_env={"PATH": path}, sandbox=self.sandbox(**options)
        )


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


async def test_a_command_writes_its_sandbox_and_nothing_else(layout: Layout) -> None:
    script = (
        "echo ok > made.txt; "
        f"echo x > {layout.outside}/escaped.txt; "
        f"echo x > {layout.workspace}/.git/hooks/pre-commit; "
        f"echo x >> {layout.home}/.gitconfig; "
        "echo x > /etc/keel-test; "
        f"echo x > {layout.workspace}/top.txt; "
        "exit 0"
    )
    result = await layout.runner().run(script, layout.node, timeout_s=30)
    assert result.exit_code == 0, result.output
    assert (layout.node / "made.txt").read_text() == "ok\n"
    assert not (layout.outside / "escaped.txt").exists()
    assert not (layout.workspace / ".git" / "hooks" / "pre-commit").exists()
    assert (layout.home / ".gitconfig").read_text() == "[user]\n\tname = me\n"
    assert not Path("/etc/keel-test").exists()
    assert not (layout.workspace / "top.txt").exists()
    assert "Read-only file system" in result.output  # / itself


async def test_the_workspace_git_home_and_keel_state_are_out_of_sight(layout: Layout) -> None:
    (layout.workspace / ".keel" / "keel.db").write_text("sessions")
    script = (
        f"ls -A {layout.workspace}/.git; cat {layout.workspace}/.git/HEAD; "
        f"cat {layout.home}/.gitconfig; cat {layout.workspace}/.keel/keel.db; ls -A $HOME; "
        "echo done"
    )
    result = await layout.runner().run(script, layout.node, timeout_s=30)
    assert "refs/heads/main" not in result.output
    assert "name = me" not in result.output
    assert "sessions" not in result.output
    assert result.output.rstrip().endswith("done")


async def test_no_secret_reaches_the_sandbox_even_through_proc(layout: Layout) -> None:
    script = (
        "env; cat /proc/1/environ; cat /proc/$PPID/environ; "
        "for f in /proc/[0-9]*/environ; do cat $f; done; "
        f"cat /proc/{os.getpid()}/environ; ls /proc | grep -c '^[0-9]'"
    )
    result = await layout.runner().run(script, layout.node, timeout_s=30)
    assert SECRET not in result.output
    assert "OPENAI_API_KEY" not in result.output
    # Only the sandbox's own few processes are visible, not this test's.
    assert int(result.output.strip().splitlines()[-1]) < 10


async def test_the_network_is_off_even_on_loopback(layout: Layout) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0)
        port = listener.getsockname()[1]
        code = (
            "import socket\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "    print('CONNECTED')\n"
            "except OSError as e:\n    print('refused', e)\n"
        )
        result = await layout.runner().run_argv(
            [sys.executable, "-c", code], layout.node, timeout_s=30
        )
        assert "refused" in result.output and "CONNECTED" not in result.output
        with pytest.raises(BlockingIOError):
            listener.accept()


async def test_network_true_lets_a_command_reach_loopback(layout: Layout) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)"
        result = await layout.runner(network=True).run_argv(
            [sys.executable, "-c", code], layout.node, timeout_s=30
        )
        assert result.ok, result.output
        listener.settimeout(5)
        connection, _ = listener.accept()
        connection.close()


async def test_a_daemon_dies_with_its_command(layout: Layout) -> None:
    script = "setsid sh -c 'while :; do echo alive >> /tmp/x; sleep 0.1; done' & echo started"
    result = await layout.runner().run(script, layout.node, timeout_s=30)
    assert "started" in result.output
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        assert b"echo alive" not in cmdline, "a sandboxed daemon outlived its command"


async def test_the_memory_limit_stops_a_runaway_allocation(layout: Layout) -> None:
    code = "b = bytearray(1024 * 1024 * 1024); print('ALLOCATED')"
    result = await layout.runner(memory_mb=256).run_argv(
        [sys.executable, "-c", code], layout.node, timeout_s=30
    )
    assert result.exit_code != 0
    assert "MemoryError" in result.output and "ALLOCATED" not in result.output


async def test_a_missing_program_is_127_as_without_a_sandbox(layout: Layout) -> None:
    result = await layout.runner().run_argv(["keel-no-such-tool"], layout.node, timeout_s=30)
    assert result.exit_code == NOT_FOUND_EXIT_CODE
    assert result.output == "keel-no-such-tool: command not found"


async def test_readonly_paths_are_readable_not_writable(layout: Layout) -> None:
    toolchain = layout.home / ".toolchain"
    toolchain.mkdir()
    (toolchain / "lib.txt").write_text("library")
    runner = layout.runner(readonly_paths=(toolchain,))
    result = await runner.run(
        f"cat {toolchain}/lib.txt; echo x > {toolchain}/lib.txt", layout.node, timeout_s=30
    )
    assert "library" in result.output and "Read-only file system" in result.output
    assert (toolchain / "lib.txt").read_text() == "library"


def test_a_readonly_path_holding_the_workspace_is_not_bound(layout: Layout) -> None:
    sandbox = layout.sandbox(readonly_paths=(layout.workspace.parent,))
    assert isinstance(sandbox, BwrapSandbox)
    argv = sandbox.wrap(["true"], layout.node, layout.env())
    binds = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--ro-bind"]
    assert str(layout.workspace.parent.resolve()) not in binds


async def test_the_python_plugin_checks_and_tests_inside_the_sandbox(layout: Layout) -> None:
    (layout.node / "bad.py").write_text('x: int = "a"\n')
    (layout.node / "test_it.py").write_text(
        "import os\n\ndef test_ok():\n    assert 1\n\ndef test_home():\n"
        "    assert not os.path.exists(os.path.expanduser('~/.gitconfig'))\n"
    )
    plugin = PythonPlugin(layout.runner())
    check = await plugin.check(layout.node, ["bad.py"])
    assert "LSP" in check.detail and not check.degraded, check.detail
    assert [r.path for r in check.residuals] == ["bad.py"]
    tests = await plugin.run_tests(layout.node, ["test_it.py"])
    assert not tests.degraded and tests.residuals == (), tests.detail


def test_without_bwrap_keel_refuses_and_names_the_fix(layout: Layout) -> None:
    env: Mapping[str, str] = {**layout.env(), "PATH": str(layout.outside)}
    with pytest.raises(SandboxUnavailable) as caught:
        open_sandbox("auto", layout.workspace, SandboxOptions(), env)
    assert isinstance(caught.value, KeelError)
    assert "bwrap not found" in str(caught.value) and FIX in str(caught.value)


def test_a_failing_bwrap_is_refused_with_its_reason(layout: Layout) -> None:
    fake = layout.outside / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = {**layout.env(), "PATH": str(layout.outside)}
    with pytest.raises(SandboxUnavailable, match="No permissions to create new namespace"):
        open_sandbox("auto", layout.workspace, SandboxOptions(), env)


async def test_mode_off_runs_unconfined_and_says_so(layout: Layout) -> None:
    sandbox = open_sandbox("off", layout.workspace, SandboxOptions(), {"PATH": str(layout.outside)})
    assert isinstance(sandbox, Unconfined)
    assert sandbox.describe() == {"mode": "off", "warning": OFF_WARNING}
    runner = SubprocessRunner(sandbox=sandbox)
    result = await runner.run(f"cat {layout.workspace}/.git/HEAD", layout.node, timeout_s=30)
    assert "refs/heads/main" in result.output


async def test_the_projects_own_environment_inside_the_workspace_is_readable(
    layout: Layout,
) -> None:
    venv = layout.workspace / ".venv" / "lib"
    venv.mkdir(parents=True)
    (venv / "dep.py").write_text("VALUE = 1\n")
    env = layout.env()
    runner = SubprocessRunner(
        base_env=env, sandbox=layout.sandbox(), readonly_paths=[layout.workspace / ".venv"]
    )
    script = f"cat {venv}/dep.py; ls -A {layout.workspace}; echo x > {venv}/dep.py"
    result = await runner.run(script, layout.node, timeout_s=30)
    assert "VALUE = 1" in result.output and "Read-only file system" in result.output
    # The workspace shows only what was bound back into it: no .git.
    assert ".venv" in result.output.split() and ".git" not in result.output.split()


async def test_a_command_in_the_workspace_itself_never_sees_its_git(layout: Layout) -> None:
    (layout.workspace / "file.txt").write_text("mine")
    script = "cat file.txt; ls -A .git; echo x > .git/config; echo ok > new.txt"
    result = await layout.runner().run(script, layout.workspace, timeout_s=30)
    assert "mine" in result.output and "Read-only file system" in result.output
    assert (layout.workspace / "new.txt").read_text() == "ok\n"
    assert not (layout.workspace / ".git" / "config").exists()


@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo not installed")
async def test_cargo_checks_and_tests_inside_the_sandbox_with_a_shared_target(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.plugins.rust import RustPlugin

    # The toolchain of this machine, which the test's HOME does not hold.
    for name, sub in (("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")):
        monkeypatch.setenv(name, os.environ.get(name) or str(Path.home() / sub))

    (layout.node / "Cargo.toml").write_text(
        '[package]\nname = "x"\nversion = "0.1.0"\nedition = "2021"\n'
    )
    (layout.node / "src").mkdir()
    (layout.node / "src" / "lib.rs").write_text(
        "pub fn f() -> i32 { 1 }\n#[cfg(test)]\nmod tests {\n"
        "    #[test]\n    fn t() { assert_eq!(super::f(), 2); }\n}\n"
    )
    target = layout.outside / "target"
    plugin = RustPlugin(layout.runner(), target_dir=target)
    check = await plugin.check(layout.node, ["src/lib.rs"])
    assert not check.degraded and check.residuals == (), check.detail
    tests = await plugin.run_tests(layout.node, None)
    assert [r.test_id for r in tests.residuals] == ["src/lib.rs::tests::t"], tests.detail
    assert any(target.iterdir())  # the shared target directory was written


def _with_marker(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _until(condition: Callable[[], bool], within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_sandboxed_processes_die_when_keel_is_killed(layout: Layout) -> None:
    """SIGKILL leaves Keel no chance to clean up: bwrap's --die-with-parent does it."""
    marker = f"keel-orphan-{os.getpid()}"
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from keel.process import SubprocessRunner\n"
        "from keel.sandbox import SandboxOptions, open_sandbox\n"
        f"ws, cwd = Path({str(layout.workspace)!r}), Path({str(layout.node)!r})\n"
        "env = {'PATH': sys.argv[1], 'HOME': '/nonexistent'}\n"
        "runner = SubprocessRunner(base_env=env, sandbox=open_sandbox("
        "'auto', ws, SandboxOptions(), env))\n"
        f"asyncio.run(runner.run('sh -c \"sleep 1000 & echo > started; sleep 1000\" {marker}', "
        "cwd, timeout_s=600))\n"
    )
    keel = subprocess.Popen([sys.executable, "-c", script, os.environ["PATH"]])
    try:
        assert _until((layout.node / "started").exists), "the command never started"
    finally:
        keel.kill()
        keel.wait()
    assert _until(lambda: _with_marker(marker) == []), "sandboxed processes outlived Keel"


async def test_unix_sockets_in_hidden_places_and_abstract_ones_are_out_of_reach(
    layout: Layout,
) -> None:
    """Docker's and D-Bus's sockets live under /run, others under /tmp or the home; abstract
    sockets belong to the network namespace."""
    path_socket = layout.home / "agent.sock"
    abstract = f"\0keel-test-{os.getpid()}"
    with (
        socket.socket(socket.AF_UNIX) as by_path,
        socket.socket(socket.AF_UNIX) as by_name,
    ):
        by_path.bind(str(path_socket))
        by_path.listen()
        by_name.bind(abstract)
        by_name.listen()
        code = (
            "import socket, sys\n"
            "for address in sys.argv[1:]:\n"
            "    address = address.replace('@', chr(0), 1)\n"
            "    try:\n"
            "        socket.socket(socket.AF_UNIX).connect(address)\n"
            "        print('CONNECTED')\n"
            "    except OSError as exc:\n"
            "        print('refused', exc)\n"
        )
        argv = [sys.executable, "-c", code, str(path_socket), "@" + abstract[1:]]
        result = await layout.runner().run_argv(argv, layout.node, timeout_s=30)
        lines = result.output.splitlines()
        assert len(lines) == 2 and all(line.startswith("refused") for line in lines), lines
        for listener in (by_path, by_name):
            listener.setblocking(False)
            with pytest.raises(BlockingIOError):
                listener.accept()


def test_keel_does_not_follow_a_link_a_command_left_to_a_file_outside(layout: Layout) -> None:
    from keel.engine.verifier import read_texts
    from keel.plugins.lsp_checker import _read_documents

    secret = layout.home / "id_rsa"
    secret.write_text("PRIVATE KEY")
    (layout.node / "owned.py").symlink_to(secret)
    (layout.node / "real.py").write_text("x = 1\n")
    (layout.node / "alias.py").symlink_to(layout.node / "real.py")
    texts = read_texts(layout.node, ["owned.py", "alias.py"])
    assert texts == {"owned.py": None, "alias.py": "x = 1\n"}
    _, documents = _read_documents(layout.node, ["owned.py", "alias.py"])
    assert [d.text for d in documents] == ["", "x = 1\n"]


def test_with_the_network_on_the_resolver_configuration_stays_readable(layout: Layout) -> None:
    sandbox = layout.sandbox(network=True)
    assert isinstance(sandbox, BwrapSandbox)
    resolver = Path(os.path.realpath("/etc/resolv.conf")).parent
    readable = sandbox.readable(layout.env(), ())
    hidden = sandbox.hidden()
    if any(resolver == h or h in resolver.parents for h in hidden):
        assert resolver in readable  # e.g. /run/systemd/resolve
    assert "--unshare-net" not in sandbox.wrap(["true"], layout.node, layout.env())
