"""`up`'s pid list: which recorded processes count as left by an earlier run."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from factorial_ws.supervisor import pid_list
from support import PYTHON, Launcher, Proc, process_env

SLEEP = [PYTHON, "-c", "import time; time.sleep(600)", "factorial_ws"]  # "ours" by command line


def sleeper(launch: Launcher) -> Proc:
    return launch.process("sleeper", SLEEP, process_env(None))


def test_the_list_records_each_pid_with_its_start_time(launch: Launcher, tmp_path: Path) -> None:
    proc = sleeper(launch)
    path = tmp_path / "up.pids"
    pid_list.write(path, [proc.pid, os.getpid()])
    ticks = pid_list.start_ticks(proc.pid)
    assert path.read_text() == f"{proc.pid} {ticks}\n{os.getpid()} {pid_list.start_ticks(os.getpid())}\n"


def test_a_leftover_not_ours_to_signal_is_reported_and_skipped(
    launch: Launcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    proc = sleeper(launch)
    path = tmp_path / "up.pids"
    pid_list.write(path, [proc.pid])

    def refuse(pid: int, sig: int) -> None:  # what a process of another user gets
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", refuse)
    with caplog.at_level(logging.WARNING):
        pid_list.stop_leftovers(path)
    assert f"process {proc.pid} left by an earlier run is not ours to stop" in caplog.text
    assert proc.alive()


def test_lines_without_a_start_time_are_never_acted_on(launch: Launcher, tmp_path: Path) -> None:
    proc = sleeper(launch)
    path = tmp_path / "up.pids"
    path.write_text(f"{proc.pid}\n")  # as an older version wrote it: the pid may be reused
    pid_list.stop_leftovers(path)
    assert proc.alive()
