"""Redis Sentinel: the whole system on a master, a replica and three Sentinels, and what a client
sees when the master is killed with SIGKILL and Sentinel promotes the replica.

Every process is real: three redis-server Sentinels (failing over one second after the master
goes silent), two redis-server data nodes, a Celery worker and the gateway.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from factorial_ws.constants import SERVICE_UNAVAILABLE, TIMEOUT_ERROR
from factorial_ws.supervisor.sentinel import RedisGroup
from support import UNIT_S, Launcher, Proc, client, group_settings

from .fault_tools import LONG_NUMBER, assert_success, busy_child, http_get, recv_raw, result_by_id, submit

CONNECTIONS = 20
REQUEST_INTERVAL_S = 0.25  # per connection: about 80 small requests a second in all
# The gateway gives up waiting for a result after this; no reply may come later than it.
HARD_TASK_TIMEOUT_S = 8
RECOVERY_S = 15 * UNIT_S


@dataclass
class SentinelSystem:
    group: RedisGroup
    worker: Proc
    gateway: Proc
    url: str
    settings: dict[str, Any] = field(default_factory=dict)


def sentinel_system(launch: Launcher, **settings: Any) -> SentinelSystem:
    group = launch.sentinel_group()
    settings = {**group_settings(group), **settings}
    worker = launch.worker(group.url, concurrency=2, **settings)
    gateway, url = launch.gateway(group.url, **settings)
    return SentinelSystem(group, worker, gateway, url, settings)


async def test_the_whole_system_serves_through_sentinel_urls(launch: Launcher) -> None:
    system = sentinel_system(launch)
    async with client(system.url) as ws:
        ack, final = await ws.factorial(5)
    assert final == {"type": "success", "task_id": ack["task_id"], "result": 120}
    health = json.loads(http_get(system.url, "/healthz"))
    assert health["problems"] == [] and health["workers"] == {"soft": 1, "hard": 1}, health


# --- the master killed under load ------------------------------------------------------------


@dataclass
class Request:
    sent_at: float
    reply: dict[str, Any] | None = None  # the final one: success or error
    replied_at: float = 0.0


async def steady_load(url: str, stop: asyncio.Event, requests: list[Request]) -> None:
    """One connection sending factorial(10) every REQUEST_INTERVAL_S until ``stop``; every reply
    must come within the gateway's wait limit plus a margin, or the request hung."""
    patience_s = HARD_TASK_TIMEOUT_S + 5 * UNIT_S
    async with client(url) as ws:
        while not stop.is_set():
            request = Request(time.monotonic())
            requests.append(request)
            first = await ws.request({"type": "factorial", "number": 10}, timeout_s=patience_s)
            final = first if first["type"] == "error" else await ws.recv(patience_s)
            request.reply, request.replied_at = final, time.monotonic()
            await asyncio.sleep(REQUEST_INTERVAL_S)


async def test_killing_the_master_under_load_answers_every_request_and_recovers_without_restarts(
    launch: Launcher,
) -> None:
    system = sentinel_system(launch, HARD_TASK_TIMEOUT=HARD_TASK_TIMEOUT_S)
    stop = asyncio.Event()
    requests: list[Request] = []
    load = [asyncio.create_task(steady_load(system.url, stop, requests)) for _ in range(CONNECTIONS)]
    await asyncio.sleep(2 * UNIT_S)
    old_master = system.group.master()
    old_master.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    # Keep the load on until requests sent after the kill succeed again (or the limit passes).
    while time.monotonic() - killed_at < RECOVERY_S + 5 * UNIT_S:
        await asyncio.sleep(0.5)
        if _first_success_after(requests, killed_at) is not None:
            await asyncio.sleep(1)
            break
    stop.set()
    await asyncio.gather(*load)  # a request without a reply in time raises TimeoutError here

    replies = [r.reply for r in requests]
    assert all(reply is not None for reply in replies)
    kinds = {_kind(reply) for reply in replies if reply is not None}
    assert kinds <= {"success", SERVICE_UNAVAILABLE, TIMEOUT_ERROR}, kinds
    recovered = _first_success_after(requests, killed_at)
    assert recovered is not None and recovered - killed_at < RECOVERY_S, (
        f"no request sent after the kill succeeded within {RECOVERY_S:.0f} s"
    )
    assert system.group.master() is not old_master
    assert system.worker.alive() and system.gateway.alive()


def _first_success_after(requests: list[Request], moment: float) -> float | None:
    times = [
        r.replied_at
        for r in list(requests)
        if r.sent_at > moment and r.reply is not None and r.reply["type"] == "success"
    ]
    return min(times, default=None)


def _kind(reply: dict[str, Any]) -> str:
    return "success" if reply["type"] == "success" else str(reply["result"])


# --- a long task across the failover ---------------------------------------------------------


async def test_a_task_running_while_the_master_fails_over_is_delivered_to_its_client(
    launch: Launcher,
) -> None:
    system = sentinel_system(launch)
    async with client(system.url) as ws:
        task_id = await submit(ws, LONG_NUMBER)
        busy_child(system.worker.pid)  # it runs; its result is stored while Sentinel fails over
        system.group.master().stop(signal.SIGKILL)
        assert_success(await recv_raw(ws, timeout_s=30 * UNIT_S), task_id, LONG_NUMBER)
    assert_success(await result_by_id(system.url, task_id), task_id, LONG_NUMBER)
    assert system.worker.alive() and system.gateway.alive()
