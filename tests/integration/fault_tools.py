"""Helpers for the fault tests: find and kill the real processes, read the gateway's state.

Processes are found through /proc (a Celery worker's pool processes are its children), and a pool
process is known to be running a task when it burns CPU: an idle one uses none.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import gmpy2

from factorial_ws.supervisor.gateways import gateway_command
from factorial_ws.supervisor.probes import cpu_seconds, free_port, stat_fields
from peers import Client, client
from support import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    UNIT_S,
    Launcher,
    Proc,
    fresh_status_page,
    process_env,
    wait_until,
)

# A factorial that keeps a pool process busy for about half a second (a 3.8-million-digit
# result): long enough to be caught in the middle, short enough to keep the tests quick.
SLOW_NUMBER = 700_000
# About a second (a 5.6-million-digit result): time to do something else while it runs.
LONG_NUMBER = 1_000_000


@functools.cache
def factorial_digits(number: int) -> str:
    return str(gmpy2.fac(number).digits())


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = stat_fields(int(entry.name))
        except (OSError, ValueError):
            continue  # exited while we looked
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def descendants_of(pid: int) -> list[int]:
    found = []
    for child in children_of(pid):
        found += [child, *descendants_of(child)]
    return found


def is_running(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def busy_child(
    worker_pid: int, *, exclude: set[int] | None = None, timeout_s: float = START_TIMEOUT_S
) -> int:
    """The pool process of the worker that has started computing, not one of ``exclude``."""
    return busy_pool_process([worker_pid], exclude=exclude, timeout_s=timeout_s)[1]


def busy_pool_process(
    worker_pids: list[int], *, exclude: set[int] | None = None, timeout_s: float = START_TIMEOUT_S
) -> tuple[int, int]:
    """(worker pid, pool process pid) of the first pool process, among those of the workers,
    that has started computing: 0.15 s of CPU beyond what it had when first seen."""
    baseline: dict[int, float] = {}
    found: list[tuple[int, int]] = []

    def check() -> bool:
        for worker_pid in worker_pids:
            for pid in children_of(worker_pid):
                if exclude and pid in exclude:
                    continue
                try:
                    used = cpu_seconds(pid)
                except OSError:
                    continue
                if used - baseline.setdefault(pid, used) >= 0.15:
                    found.append((worker_pid, pid))
                    return True
        return False

    wait_until(check, timeout_s, what=f"a busy pool process of workers {worker_pids}")
    return found[0]


def start_gateways(
    launch: Launcher, redis_url: str, processes: int = 2, *, name: str = "gateways"
) -> tuple[Proc, int, list[int]]:
    """`factorial-ws serve` with WS_PROCESSES: returns it, its port and its children's pids once
    each child listens (a child left behind by a failed test is killed at the end)."""
    port = free_port()
    command = gateway_command("--host", "127.0.0.1", "--port", str(port))
    parent = launch.process(name, command, process_env(redis_url, WS_PROCESSES=processes))
    wait_until(
        lambda: parent.log().count("gateway listening") == processes,
        what="every gateway child",
        watch=[parent],
    )
    children = children_of(parent.pid)
    launch.callback(kill_if_running, children)
    assert len(children) == processes, children
    return parent, port, children


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    os.kill(pid, sig)


def kill_if_running(pids: list[int]) -> None:
    """SIGKILL each of ``pids`` still there: a cleanup for processes no launcher started."""
    for pid in pids:
        if is_running(pid):
            with contextlib.suppress(ProcessLookupError):
                kill(pid)


def wait_gone(pids: list[int], timeout_s: float = STOP_TIMEOUT_S) -> None:
    wait_until(lambda: not any(is_running(pid) for pid in pids), timeout_s, what=f"{pids} to exit")


# --- the client's view ------------------------------------------------------------------------


async def submit(ws: Client, number: int) -> str:
    ack = await ws.request({"type": "factorial", "number": number})
    assert ack["type"] == "result", ack
    return str(ack["task_id"])


async def result_by_id(url: str, task_id: str, timeout_s: float = 60 * UNIT_S) -> dict[str, Any]:
    """Look the task up on a fresh connection until it has an outcome. A lookup of a task still
    queued answers "pending", then the outcome or, after the gateway's wait limit, a timeout;
    then it is asked again."""
    deadline = time.monotonic() + timeout_s
    async with client(url) as ws:
        while True:
            await ws.send({"type": "result", "task_id": task_id})
            reply = await ws.recv(timeout_s, keep_ints_as_text=True)
            if reply["type"] == "pending":
                reply = await ws.recv(timeout_s, keep_ints_as_text=True)
            if reply["type"] == "success" or time.monotonic() > deadline:
                return reply
            assert reply == {"type": "error", "result": "Timeout error", "task_id": task_id}, reply


def assert_success(reply: dict[str, Any], task_id: str, number: int) -> None:
    assert reply["type"] == "success" and reply["task_id"] == task_id, str(reply)[:300]
    assert reply["result"] == factorial_digits(number)


def http_get(url: str, path: str, *, fresh: bool = True) -> str:
    """The body of a GET of ``path``. /healthz and /metrics are built after the previous read of
    them (``fresh_status_page``); with ``fresh=False`` whatever the answering process built
    within the last second will do: for reads repeated while nothing changes, that only reach
    each of several processes."""
    http_url = url.replace("ws://", "http://").rstrip("/") + path
    freshness = fresh_status_page(http_url) if fresh else contextlib.nullcontext()
    with freshness, urllib.request.urlopen(http_url, timeout=5 * UNIT_S) as response:
        return str(response.read().decode())


def metric(url: str, name: str) -> float:
    """One sample from the gateway's /metrics, by its name and labels as written there."""
    for line in http_get(url, "/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")
