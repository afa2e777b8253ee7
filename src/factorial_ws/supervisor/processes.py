"""The one process toolkit: start children that die with their parent, stop them (terminate,
then kill), wait for a condition. Looking at processes and ports from outside is ``probes.py``.

`up`, the multi-process gateway, the private Redis, the worker's pool processes, the benchmark
and the tests all use these, so each of those things is written once.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .probes import stat_fields

STOP_GRACE_S = 10.0
_POLL_INTERVAL_S = 0.05
_PR_SET_PDEATHSIG = 1


class ChildExited(RuntimeError):
    """A child process ended while we were waiting for it to become ready."""


def set_parent_death_signal(sig: int, parent_pid: int | None = None) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies, however it dies
    (even ``kill -9``), so no child outlives the process that started it.

    With ``parent_pid``: a parent that died before the call (between fork and here) would never
    signal us, so then send ``sig`` to ourselves now."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)


def start_child(
    command: Sequence[str],
    env: dict[str, str] | None = None,
    *,
    death_signal: int = signal.SIGKILL,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command``; it receives ``death_signal`` when this process dies. With
    ``log_path`` its output is appended there, else it shares our terminal."""
    preexec_fn = functools.partial(set_parent_death_signal, death_signal, os.getpid())
    if log_path is None:
        return subprocess.Popen(list(command), env=env, cwd=cwd, preexec_fn=preexec_fn)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(command), env=env, cwd=cwd, preexec_fn=preexec_fn, stdout=log, stderr=subprocess.STDOUT
        )


def stop_child(
    process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S, sig: int = signal.SIGTERM
) -> int:
    """Ask the process to stop (``sig``), wait ``grace_s``, then kill it; returns its exit code.
    A stopped (SIGSTOP) process is continued first, or it could not act on the signal."""
    return stop_children([process], grace_s, (sig,))[0]


def stop_children(
    processes: Sequence[subprocess.Popen[bytes]],
    grace_s: float = STOP_GRACE_S,
    signals: Sequence[int] = (signal.SIGTERM,),
) -> list[int]:
    """``stop_child`` for several processes at once: each of ``signals`` in turn goes to those
    still running, with ``grace_s`` to act on it (shared by all, so stopping N takes as long as
    stopping one); then whatever is left is killed. Returns the exit codes."""
    for sig in signals:
        running = [process for process in processes if process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.send_signal(sig)
        deadline = time.monotonic() + grace_s
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.poll() is None:
            process.kill()
    return [process.wait() for process in processes]


def wait_until(
    predicate: Callable[[], object],
    timeout_s: float,
    what: str,
    *,
    watch: Iterable[subprocess.Popen[bytes]] = (),
) -> None:
    """Return once ``predicate()`` is true; raise TimeoutError after ``timeout_s``, or
    ChildExited as soon as one of the ``watch`` processes has ended."""
    deadline = time.monotonic() + timeout_s
    watched = list(watch)
    while True:
        for process in watched:
            if process.poll() is not None:
                raise ChildExited(f"{process.args!r} exited ({process.returncode}) before {what}")
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(_POLL_INTERVAL_S)


def wait_for_exit(pid: int, timeout_s: float) -> bool:
    """True once the process ``pid`` (not necessarily our child) is gone."""

    def gone() -> bool:
        try:
            # A zombie has exited; only its parent has not collected its exit code yet.
            return stat_fields(pid)[0] == "Z"
        except OSError:
            return True

    with contextlib.suppress(TimeoutError):
        wait_until(gone, timeout_s, f"process {pid} to exit")
        return True
    return False
