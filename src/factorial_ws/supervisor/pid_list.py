"""`up`'s list of the processes it started (``up.pids`` in the data folder), and the clean-up of
what a killed earlier run left in it.

Each line is ``pid start_ticks``: the process's start time (clock ticks after boot, from
/proc/<pid>/stat) tells it apart from a later process that got the same pid.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterable
from pathlib import Path

from .probes import stat_fields
from .processes import STOP_GRACE_S, wait_for_exit

logger = logging.getLogger(__name__)

_START_TICKS_FIELD = 19  # of stat_fields()
# What the command line of a process of ours contains (gateways and workers run our package).
_OUR_COMMANDS = (b"factorial_ws", b"redis-server")


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks after boot; None if it is gone."""
    try:
        return int(stat_fields(pid)[_START_TICKS_FIELD])
    except (OSError, IndexError, ValueError):
        return None


def write(path: Path, pids: Iterable[int]) -> None:
    records = [(pid, start_ticks(pid)) for pid in pids]
    path.write_text("".join(f"{pid} {ticks}\n" for pid, ticks in records if ticks is not None))


def stop_leftovers(path: Path) -> None:
    """Stop each process of the list that is still the one we started (SIGTERM, then SIGKILL
    after a grace): a killed earlier run's processes must not share our data or ports."""
    for pid, ticks in _read(path):
        if not _is_ours(pid, ticks):
            continue
        logger.warning("stopping process %d left by an earlier run", pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            except PermissionError:
                logger.warning("process %d left by an earlier run is not ours to stop", pid)
                break
            if wait_for_exit(pid, STOP_GRACE_S):
                break


def _read(path: Path) -> list[tuple[int, int]]:
    """The (pid, start ticks) records; a line without a start time cannot be checked: skipped."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        with contextlib.suppress(ValueError):
            pid, ticks = map(int, line.split())
            records.append((pid, ticks))
    return records


def _is_ours(pid: int, ticks: int) -> bool:
    """The same process we started: same start time, same owner, one of our commands."""
    try:
        same_owner = Path(f"/proc/{pid}").stat().st_uid == os.getuid()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return same_owner and start_ticks(pid) == ticks and any(c in cmdline for c in _OUR_COMMANDS)
