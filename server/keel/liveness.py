"""Whether the process that recorded a session's run is still that process.

A run is stored as (pid, host, started_at). After a crash the pid can be given to another
process; asking only "does this pid exist" would show a dead session as running and, worse,
let ``keel abort`` signal a stranger. On Linux the process's own start time (``/proc``) tells
the two apart: the run's process started before the run was recorded, a later holder of the
pid after it.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from functools import cache
from pathlib import Path

#: Boot time has one-second resolution and the run is recorded a moment after its process
#: started; a process that began this much after the run's record is another process.
SLACK_S = 2.0


def run_alive(pid: int, host: str, since: str | None = None) -> bool:
    """Whether the run's process still exists (a run on another host is taken as alive).

    ``since`` is the run's recorded start (ISO 8601); when given, a process holding ``pid``
    that started after it is not the run's.
    """
    if pid <= 0:
        return False  # 0 and -1 would ask about a process group, not a process
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        pass  # it exists, owned by someone else
    if since is None:
        return True
    started = process_started(pid)
    recorded = _timestamp(since)
    if started is None or recorded is None:
        return True  # cannot tell: keep the old answer rather than guess
    return started <= recorded + SLACK_S


def process_started(pid: int) -> float | None:
    """The process's start as a Unix time, from ``/proc`` (None where that is unavailable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    boot, ticks = _boot_time(), os.sysconf("SC_CLK_TCK")
    try:
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        return boot + int(fields[19]) / ticks if boot is not None else None
    except (ValueError, IndexError):
        return None


@cache
def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _timestamp(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
