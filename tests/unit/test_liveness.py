"""keel.liveness: a run's process is told from a later process that was given its pid."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from keel.liveness import process_started, run_alive

HERE = socket.gethostname()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def test_a_process_that_started_before_its_run_was_recorded_is_the_run() -> None:
    assert run_alive(os.getpid(), HERE, _iso(datetime.now(UTC)))
    assert run_alive(os.getpid(), HERE)  # without a recorded start: the pid alone


def test_a_process_that_started_after_the_run_was_recorded_is_another() -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as later:
        try:
            an_hour_ago = _iso(datetime.now(UTC) - timedelta(hours=1))
            assert not run_alive(later.pid, HERE, an_hour_ago)
            assert run_alive(later.pid, HERE, _iso(datetime.now(UTC)))
        finally:
            later.kill()


def test_gone_processes_group_pids_and_other_hosts() -> None:
    with subprocess.Popen(["true"]) as gone:
        pass
    assert not run_alive(gone.pid, HERE)
    assert not run_alive(0, HERE) and not run_alive(-1, HERE)
    assert run_alive(gone.pid, HERE + "-elsewhere")  # another machine's: assumed running


def test_the_start_time_is_read_from_proc_and_unparsable_starts_keep_the_pid_answer() -> None:
    started = process_started(os.getpid())
    assert started is not None and started <= datetime.now(UTC).timestamp()
    assert run_alive(os.getpid(), HERE, "not a time")
