"""The one process toolkit: start children that die with their parent, stop them (terminate,
then kill), wait for a condition, and look at processes and ports from outside.

`up`, the multi-process gateway, the private Redis, the benchmark and the tests all use these,
so each of those things is written once.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import redis

from .constants import WORKER_STALE_S, WORKERS_KEY_PREFIX

STOP_GRACE_S = 10.0
_POLL_INTERVAL_S = 0.05
_PR_SET_PDEATHSIG = 1

# The Celery app a worker process loads (it also registers the worker-only hooks).
WORKER_APP = "factorial_ws.worker"
# Gossip and mingle are Celery's worker-to-worker chatter over Redis pub/sub; nothing here uses
# them (`factorial-ws bench --sweep` measured gossip, mingle and heartbeat together at 5-10% of
# tasks/s). The event heartbeat stays on: Flower lists workers from it, and without it a worker
# has no event dispatcher, so `celery control enable_events` cannot switch task events on. It
# is one event every 2 s: within the noise per task, under 0.5% of a core when idle (measured).
QUIET_WORKER_OPTIONS = ("--without-gossip", "--without-mingle")


class ChildExited(RuntimeError):
    """A child process ended while we were waiting for it to become ready."""


# --- starting and stopping ----------------------------------------------------------------------


def set_parent_death_signal(sig: int) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies, however it dies
    (even ``kill -9``), so no child outlives the process that started it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


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
    preexec_fn = functools.partial(set_parent_death_signal, death_signal)
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
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)
            process.send_signal(sig)
        try:
            return process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


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
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    with contextlib.suppress(TimeoutError):
        wait_until(gone, timeout_s, f"process {pid} to exit")
        return True
    return False


def raise_open_files_limit() -> None:
    """Each connection is a file descriptor; the usual soft limit (1024) is far too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the commands of our processes --------------------------------------------------------------


def worker_command(
    queues: str,
    *,
    concurrency: int | None = None,
    hostname: str | None = None,
    log_level: str = "INFO",
    app: str = WORKER_APP,
) -> list[str]:
    """A Celery prefork worker consuming ``queues`` (comma-separated)."""
    command = [
        sys.executable, "-m", "celery", "-A", app, "worker", "--pool=prefork", "-Q", queues,
        f"--loglevel={log_level}", *QUIET_WORKER_OPTIONS,
    ]  # fmt: skip
    if concurrency:
        command.append(f"--concurrency={concurrency}")
    if hostname:
        command += ["-n", hostname]
    return command


def gateway_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "factorial_ws", "serve", *args]


# --- looking from outside -----------------------------------------------------------------------


def live_workers(client: redis.Redis, queue: str) -> int:
    """Workers whose heartbeat for ``queue`` is fresh (see worker_hooks)."""
    return int(client.zcount(WORKERS_KEY_PREFIX + queue, time.time() - WORKER_STALE_S, "+inf"))


def worker_is_live(client: redis.Redis, hostname: str, queues: Iterable[str]) -> bool:
    """True once the worker ``hostname`` has a fresh heartbeat on every one of ``queues``."""
    since = time.time() - WORKER_STALE_S
    return all((client.zscore(WORKERS_KEY_PREFIX + q, hostname) or 0) >= since for q in queues)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on the port."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (which may contain spaces): state,
    ppid, ..., utime at index 11, stime at 12, starttime at 19."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, key: str = "VmHWM") -> int:
    """A memory figure of /proc/<pid>/status in KiB (VmHWM: peak resident set)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)
