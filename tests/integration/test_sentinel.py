"""Redis Sentinel: the whole system on a master, a replica and three Sentinels, and what a client
sees when the master is killed with SIGKILL and Sentinel promotes the replica.

Every process is real: three redis-server Sentinels (failing over one second after the master
goes silent), two redis-server data nodes, a Celery worker and the gateway.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from factorial_ws.constants import SERVICE_UNAVAILABLE, TIMEOUT_ERROR, UNKNOWN_TASK_ID
from factorial_ws.supervisor.sentinel import RedisGroup
from peers import client
from support import UNIT_S, Launcher, Proc, group_settings

from .fault_tools import LONG_NUMBER, assert_success, busy_child, http_get, result_by_id, submit

pytestmark = pytest.mark.long  # 20 s or more: started first (conftest.py)

# Its bounds are Sentinel's and the gateway's timers, not the machine's speed: beside three other
# test processes, requests sent after the kill succeeded again 2.4 s after it (the bound is 15 s)
# and no reply took over 0.2 s, as when it ran alone; so it runs beside other tests.

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


def sentinel_system(
    launch: Launcher,
    *,
    replicas: int = 1,
    password: str | None = None,
    sentinel_password: str | None = None,
    **settings: Any,
) -> SentinelSystem:
    group = launch.sentinel_group(replicas=replicas, password=password, sentinel_password=sentinel_password)
    settings = {**group_settings(group), **settings}
    worker = launch.worker(group.url, concurrency=2, **settings)
    gateway, url = launch.gateway(group.url, **settings)
    return SentinelSystem(group, worker, gateway, url, settings)


# --- the master killed under load ------------------------------------------------------------


@dataclass
class Request:
    sent_at: float
    task_id: str | None = None  # once acknowledged
    acked_at: float = 0.0
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
            if first["type"] == "result":
                request.task_id, request.acked_at = first["task_id"], time.monotonic()
            final = first if first["type"] == "error" else await ws.recv(patience_s)
            request.reply, request.replied_at = final, time.monotonic()
            await asyncio.sleep(REQUEST_INTERVAL_S)


# Both replicas have caught up with a write this long after it (they replicate continuously).
REPLICAS_SETTLED_S = 1.0


async def test_killing_the_master_under_load_answers_every_request_and_loses_no_acknowledged_task(
    launch: Launcher,
) -> None:
    system = sentinel_system(
        launch,
        # Two replicas: after the failover the new master still has one to confirm tasks.
        replicas=2,
        HARD_TASK_TIMEOUT=HARD_TASK_TIMEOUT_S,
        # A task a worker held when its connection dropped comes back after this (its result
        # may not have reached the replica); the smallest value the config accepts.
        VISIBILITY_TIMEOUT=2 * HARD_TASK_TIMEOUT_S + 1,
        REDIS_MIN_REPLICAS_ACK=1,
    )
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
    health = json.loads(http_get(system.url, "/healthz"))  # read from the new master
    assert health["problems"] == [] and health["workers"] == {"soft": 1, "hard": 1}, health

    # WAIT 1 of 2 replicas: a task acked in the last instant may be on the replica Sentinel does
    # not promote (it judges them by offsets it reads once a second), so only tasks acked a
    # moment earlier are surely on both. Exactly-one-replica loss is proven deterministically
    # by the test below; docs/faults.md says when to set REDIS_MIN_REPLICAS_ACK to every replica.
    settled = killed_at - REPLICAS_SETTLED_S
    acked = [r.task_id for r in requests if r.task_id is not None and r.acked_at < settled]
    assert acked, "no task was acknowledged before the kill"
    lost = [task_id for task_id in acked if not await _computed(system.url, task_id, 10)]
    assert lost == [], f"{len(lost)} of {len(acked)} tasks acknowledged before the kill were lost"


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
    # Passwords on every server and on the Sentinels: each client must give both, after the
    # failover too.
    system = sentinel_system(launch, password="p@ss:w/rd", sentinel_password="watch-3rs")
    async with client(system.url) as ws:
        task_id = await submit(ws, LONG_NUMBER)
        busy_child(system.worker.pid)  # it runs; its result is stored while Sentinel fails over
        system.group.master().stop(signal.SIGKILL)
        assert_success(await ws.recv(30 * UNIT_S, keep_ints_as_text=True), task_id, LONG_NUMBER)
    assert_success(await result_by_id(system.url, task_id), task_id, LONG_NUMBER)
    assert system.worker.alive() and system.gateway.alive()


# --- no acknowledged task lost: REDIS_MIN_REPLICAS_ACK --------------------------------------


async def test_with_min_replicas_ack_no_acknowledged_task_is_lost_when_the_master_dies_ahead_of_its_replica(
    launch: Launcher,
) -> None:
    """The replica is frozen and cut off from the master while tasks are submitted, so the
    master holds writes it has not replicated when it is killed: exactly the writes a failover
    loses. A task the client was told about (its ack) must not be among them."""
    system = sentinel_system(launch, REDIS_MIN_REPLICAS_ACK=1)
    acked = [reply["task_id"] for reply in await submit_concurrently(system.url, 5)]
    assert len(acked) == 5  # with the replica in sync, every task is acknowledged

    master = system.group.master()
    replica = next(server for server in system.group.servers if server is not master)
    assert replica.process is not None
    replica.process.send_signal(signal.SIGSTOP)
    with redis.Redis.from_url(master.url) as direct:  # the frozen replica cannot reconnect
        direct.client_kill_filter(_type="replica")
    replies = await submit_concurrently(system.url, 5)
    acked += [reply["task_id"] for reply in replies if reply["type"] == "result"]
    refused = [reply for reply in replies if reply["type"] == "error"]
    assert all(reply == {"type": "error", "result": SERVICE_UNAVAILABLE} for reply in refused), refused
    master.stop(signal.SIGKILL)
    replica.process.send_signal(signal.SIGCONT)

    lost = [task_id for task_id in acked if not await _computed(system.url, task_id, 7)]
    assert lost == [], f"{len(lost)} of {len(acked)} acknowledged tasks lost in the failover"
    assert system.group.master() is replica


async def submit_concurrently(url: str, count: int) -> list[dict[str, Any]]:
    """factorial(7) from ``count`` connections at once; each one's first reply."""

    async def one() -> dict[str, Any]:
        async with client(url) as ws:
            reply = await ws.request({"type": "factorial", "number": 7})
            if reply["type"] == "result":
                await ws.recv()  # its result, before the connection closes
            return reply

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _computed(url: str, task_id: str, number: int) -> bool:
    """True once the task's result can be fetched by id (waiting out the failover)."""
    deadline = time.monotonic() + RECOVERY_S + 10 * UNIT_S
    while time.monotonic() < deadline:
        try:
            async with client(url) as ws:
                reply = await ws.request({"type": "result", "task_id": task_id})
                if reply["type"] == "pending":
                    reply = await ws.recv()
        except OSError:
            reply = {}
        if reply.get("type") == "success":
            assert reply["result"] == math.factorial(number)
            return True
        if reply.get("result") == UNKNOWN_TASK_ID:
            return False  # neither the task nor its result is in Redis
        await asyncio.sleep(0.5)
    return False
