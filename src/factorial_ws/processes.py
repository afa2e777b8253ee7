"""The one process toolkit: start children that die with their parent, stop them (terminate,
then kill), wait for a condition, look at processes and ports from outside, and fit this process
for thousands of connections (file descriptors, the garbage collector).

`up`, the multi-process gateway, the private Redis, the benchmark and the tests all use these,
so each of those things is written once.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import gc
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import redis

from .constants import WORKER_STALE_S, WORKERS_KEY_PREFIX

STOP_GRACE_S = 10.0
_GC_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)
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
# How a Celery worker is stopped: SIGTERM, a warm shutdown (it takes no new task and lets the
# running ones finish), then SIGQUIT, a cold one (it cancels the tasks still running and hands
# them back to their queues at once; after SIGKILL they would wait out the visibility timeout).
WORKER_STOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT)


class ChildExited(RuntimeError):
    """A child process ended while we were waiting for it to become ready."""


# --- starting and stopping ----------------------------------------------------------------------


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


def raise_open_files_limit() -> None:
    """Each connection is a file descriptor; the usual soft limit (1024) is far too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# glibc's mallopt parameter: allocations this large get pages of their own (mmap).
_M_MMAP_THRESHOLD = -3
_LARGE_ALLOCATION_BYTES = 256 * 1024


def return_large_allocations() -> None:
    """Results of megabytes come and go (read from Redis, sent, dropped). glibc raises its mmap
    threshold after the first such block is freed, so the later ones come from the heap, whose
    freed middle is never given back: a gateway that once held 128 MiB of results kept its peak
    RSS for good. A fixed threshold gives every large block pages of its own, returned when it
    is freed; a syscall pair per block of megabytes costs nothing next to copying it. Linux
    with glibc only; elsewhere nothing is changed."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, _LARGE_ALLOCATION_BYTES)


@contextlib.contextmanager
def tuned_collector() -> Iterator[None]:
    """The cyclic garbage collector of a process that holds many connections (the gateway, the
    benchmark's crowds). Every open connection or waiting request holds objects for as long as it
    lasts, so with thousands of them the collector's full passes walk tens of thousands of live
    objects, again and again, each holding the event loop: collected less often, they cost a few
    percent of the CPU, not a quarter or more."""
    thresholds = gc.get_threshold()
    gc.freeze()  # what was there before (start-up's imports) is never garbage
    gc.set_threshold(_GC_THRESHOLD, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


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
    """Workers whose heartbeat for ``queue`` is fresh (see worker/hooks.py)."""
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


# --- who listens on a port ----------------------------------------------------------------------

_TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


def listening_sockets(port: int) -> dict[int, str]:
    """The TCP sockets listening on ``port``, on any address, IPv4 or IPv6: inode -> local
    address (as /proc/net/tcp writes it: hex address, colon, hex port)."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6
        for row in rows:
            fields = row.split()  # sl, local_address, rem_address, st, ..., inode at 9
            if fields[3] == _TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                sockets[int(fields[9])] = fields[1]
    return sockets


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets the process has open (empty if it is gone or not ours to see)."""
    inodes: set[int] = set()
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for descriptor in descriptors:
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def listening_pids(port: int) -> set[int]:
    """The processes (those we may look into) that hold a socket listening on ``port``."""
    listening = listening_sockets(port).keys()
    if not listening:
        return set()
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return {pid for pid in pids if socket_inodes(pid) & listening}


def port_taken(host: str, port: int) -> bool:
    """True when a socket already listens on ``host``:``port``: a server binding there (with
    SO_REUSEADDR, on each address of ``host``, as asyncio does) would fail, or would share the
    port with that other process through SO_REUSEPORT."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # not ours to report: the server's own bind says what is wrong
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def command_line(pid: int) -> str:
    """The process's command line, arguments separated by spaces ("" if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode()
    except OSError:
        return ""
