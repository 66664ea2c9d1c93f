"""What every language plugin shares: finding its tools and saying plainly when it cannot measure.

A sensor whose tool is missing must never look like a pass. :func:`degraded` builds the one
report shape for that case (``degraded=True`` plus a V_boot residual naming the tool and the
component that went unmeasured), so the engine can neither call such a node stable nor hide
why.

Tools are looked up next to ``sys.executable`` first, because Keel ships its Python sensors
(``ty``, ``pytest``) in the environment it runs in, then on ``PATH``, then in any extra
directories a plugin names (``~/.cargo/bin`` for cargo, which is often not on a service's
``PATH``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from keel.engine.models import Component, Residual, SensorReport

#: ``name -> absolute path or None``; plugins take one so tests can hide or swap tools.
ToolFinder = Callable[[str], str | None]


def find_tool(
    name: str,
    *,
    path: str | None = None,
    prefer_dirs: Iterable[Path] | None = None,
    extra_dirs: Iterable[Path] = (),
) -> str | None:
    """The executable ``name``: beside ``sys.executable``, then on ``path``, then ``extra_dirs``.

    ``path`` defaults to ``$PATH``; ``prefer_dirs`` defaults to the directory of
    ``sys.executable`` (the virtual environment Keel runs in, not resolved through symlinks).
    """
    preferred = [Path(sys.executable).parent] if prefer_dirs is None else list(prefer_dirs)
    search = os.environ.get("PATH", "") if path is None else path
    dirs = [str(d) for d in preferred]
    dirs += [d for d in search.split(os.pathsep) if d]
    dirs += [str(d) for d in extra_dirs]
    for directory in dirs:
        found = shutil.which(name, path=directory)
        if found:
            return found
    return None


def first_tool(finder: ToolFinder, names: Sequence[str]) -> tuple[str, str] | None:
    """The first of ``names`` that ``finder`` locates, as ``(name, path)``."""
    for name in names:
        found = finder(name)
        if found:
            return name, found
    return None


def degraded(sensor: str, message: str, *, detail: str = "") -> SensorReport:
    """A report saying the sensor could not measure, with one V_boot residual saying why.

    ``message`` should name the tool and what went unmeasured, e.g.
    ``"ty not found: V_syn cannot be measured"``.
    """
    residual = Residual(component=Component.BOOT, message=message, source=sensor)
    return SensorReport(
        sensor=sensor, residuals=(residual,), degraded=True, detail=detail or message
    )


def clean(sensor: str, detail: str = "") -> SensorReport:
    """A report with nothing to say (nothing to check, or all checked and fine)."""
    return SensorReport(sensor=sensor, detail=detail)


def first_lines(text: str, count: int = 3, limit: int = 500) -> str:
    """The first ``count`` non-blank lines of ``text``, joined, at most ``limit`` characters."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    joined = "\n".join(lines[:count])
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."


def last_lines(text: str, count: int = 10, limit: int = 1500) -> str:
    """The last ``count`` non-blank lines of ``text`` (where tools print their verdicts)."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    joined = "\n".join(lines[-count:])
    return joined if len(joined) <= limit else "..." + joined[-(limit - 3) :]


def relative_to_root(path: str | Path, root: Path) -> str:
    """``path`` relative to ``root`` with ``/`` separators, or unchanged when outside it."""
    candidate = Path(path)
    if not candidate.is_absolute():
        return candidate.as_posix()
    for base in (root, root.resolve()):
        try:
            return candidate.relative_to(base).as_posix()
        except ValueError:
            continue
    try:
        return candidate.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError):
        return candidate.as_posix()


#: How much one diagnostic weighs, by severity; information and hints weigh nothing.
SEVERITY_MAGNITUDE: dict[str, float] = {"error": 1.0, "warning": 0.3}


def diagnostic_residual(
    *,
    source: str,
    severity: str,
    message: str,
    path: str | None,
    line: int | None,
    rule: str | None = None,
) -> Residual | None:
    """One checker diagnostic as a V_syn residual (``None`` for information and hints).

    The message reads like a compiler's: ``error[invalid-assignment] Object of type ...``,
    whichever route (LSP or CLI) produced it.
    """
    magnitude = SEVERITY_MAGNITUDE.get(severity)
    if magnitude is None:
        return None
    head = first_lines(message, count=1)
    text = f"{severity}[{rule}] {head}" if rule else f"{severity}: {head}"
    return Residual(
        component=Component.SYN,
        message=text,
        source=source,
        magnitude=magnitude,
        path=path,
        line=line,
    )
