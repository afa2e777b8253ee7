"""`factorial-ws up` stops what an earlier run left in its pid list, and nothing else: a pid
can be reused by another process, which may even have a matching command line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from factorial_ws.supervisor.probes import stat_fields
from support import STOP_TIMEOUT_S, Launcher

from .fault_tools import is_running
from .test_up import start_up, up_env

Sleeper = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def sleeper() -> Iterator[Sleeper]:
    """Starts processes with "factorial_ws" in their command line, as `up`'s children have."""
    started: list[subprocess.Popen[bytes]] = []

    def start(user: str | None = None) -> subprocess.Popen[bytes]:
        command = ["/bin/sh", "-c", "sleep 600; :", "factorial_ws"]
        process = subprocess.Popen(command, user=user, start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_ticks(pid: int) -> int:
    return int(stat_fields(pid)[19])


def test_up_stops_only_the_processes_its_earlier_run_started(
    launch: Launcher, tmp_path: Path, sleeper: Sleeper
) -> None:
    left_behind = sleeper()  # what a killed earlier run left: same pid, same start time
    pid_reused = sleeper()  # its pid was in the list, but the process started later
    foreign = sleeper(user="nobody")  # someone else's: never ours to signal
    data = tmp_path / "data"
    data.mkdir()
    (data / "up.pids").write_text(
        f"{left_behind.pid} {start_ticks(left_behind.pid)}\n"
        f"{pid_reused.pid} {start_ticks(pid_reused.pid) - 1}\n"
        f"{foreign.pid} {start_ticks(foreign.pid)}\n"
    )
    up = start_up(launch, up_env(data))
    assert left_behind.wait(STOP_TIMEOUT_S) == -signal.SIGTERM
    assert is_running(pid_reused.pid) and is_running(foreign.pid)
    assert f"stopping process {left_behind.pid} left by an earlier run" in up.log()
    assert str(pid_reused.pid) not in up.log() and str(foreign.pid) not in up.log()
