"""Sandboxes for the processes that run project or model code (docs/explanation/sandbox.md).

:func:`open_sandbox` gives the session's :class:`~keel.engine.ports.Sandbox`: bubblewrap on
Linux, or :class:`Unconfined` only when ``[sandbox] mode = "off"`` says so explicitly.
Anything else that cannot be confined raises :class:`SandboxUnavailable` naming the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from keel.engine.ports import Sandbox
from keel.sandbox.bwrap import FIX, BwrapSandbox, SandboxOptions, SandboxUnavailable, open_bwrap

__all__ = [
    "FIX",
    "OFF_WARNING",
    "BwrapSandbox",
    "SandboxOptions",
    "SandboxUnavailable",
    "Unconfined",
    "open_sandbox",
]

#: Said by every session (event, status, log) that runs with the sandbox off.
OFF_WARNING = (
    'sandbox off ([sandbox] mode = "off"): model-written code runs with your user\'s full '
    "access to files, network and processes"
)


class Unconfined:
    """``[sandbox] mode = "off"``: commands run as they are, and every session says so."""

    @property
    def mode(self) -> str:
        return "off"

    def describe(self) -> dict[str, object]:
        return {"mode": "off", "warning": OFF_WARNING}

    def wrap(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        *,
        writable: Sequence[Path] = (),
        readonly: Sequence[Path] = (),
    ) -> list[str]:
        return list(argv)


def open_sandbox(
    mode: str, workspace: Path, options: SandboxOptions, env: Mapping[str, str]
) -> Sandbox:
    """The sandbox ``mode`` asks for (``"auto"``: bubblewrap, or refuse). Blocking."""
    if mode == "off":
        return Unconfined()
    return open_bwrap(workspace, options, env)
