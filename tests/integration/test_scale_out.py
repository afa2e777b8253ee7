"""Scale-out: several gateways and several workers on one Redis behave as one service.

Every process here is real: Redis, Celery workers and gateways are separate processes, and the
clients speak WebSocket to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from factorial_ws.supervisor.redis_server import RedisServer
from peers import client
from support import UNIT_S, Launcher, Proc, System, paused, wait_until

from .fault_tools import start_gateways

# Some milliseconds of GMP work on the hard queue, and a result small enough to parse quickly.
SLOW_NUMBER = 30_000


# One Redis, two workers and two gateways for the first two tests, which only use them as a
# client would: each computes numbers of its own (no result of the other to reuse), has every
# reply before it ends (nothing left queued or running), and the second kills a gateway of its own.


@pytest.fixture(scope="module")
def two_workers(module_launch: Launcher, module_redis: RedisServer) -> list[Proc]:
    return [module_launch.worker(module_redis.url, concurrency=1, name=f"worker-{n}") for n in "ab"]


@pytest.fixture(scope="module")
def two_gateways(module_launch: Launcher, module_redis: RedisServer) -> list[tuple[Proc, str]]:
    return [module_launch.gateway(module_redis.url, name=f"gateway-{n}") for n in "ab"]


async def test_a_task_submitted_on_one_gateway_is_looked_up_on_another(
    two_workers: list[Proc], two_gateways: list[tuple[Proc, str]]
) -> None:
    (_, url_a), (_, url_b) = two_gateways
    async with client(url_a) as a, client(url_b) as b:
        # Looked up on B while it may still be running: B waits for it, then answers.
        ack = await a.request({"type": "factorial", "number": SLOW_NUMBER, "id": 1})
        looked_up = await b.request({"type": "result", "task_id": ack["task_id"], "id": 2}, 60 * UNIT_S)
        if looked_up["type"] == "pending":
            looked_up = await b.recv(timeout_s=60 * UNIT_S)
        on_a = await a.recv(timeout_s=60 * UNIT_S)
        assert looked_up["type"] == on_a["type"] == "success"
        assert looked_up["result"] == on_a["result"]
        assert looked_up["task_id"] == on_a["task_id"] == ack["task_id"]

        # And once finished: B reads the stored result.
        ack, done = await a.factorial(20)
        again = await b.request({"type": "result", "task_id": ack["task_id"]})
        assert done["result"] == again["result"] == 2432902008176640000


async def test_killing_one_gateway_loses_none_of_the_other_gateways_tasks(
    launch: Launcher, module_redis: RedisServer, two_workers: list[Proc], two_gateways: list[tuple[Proc, str]]
) -> None:
    proc_a, url_a = launch.gateway(module_redis.url, name="gateway-killed")
    _, url_b = two_gateways[1]
    logged = {worker.name: len(worker.log()) for worker in two_workers}  # before this test
    count = 12
    async with client(url_a) as a, client(url_b) as b:
        with paused(*(worker.pid for worker in two_workers)):  # every task is still queued when A dies
            for index in range(count):
                await a.send({"type": "factorial", "number": 100 + index, "id": f"a{index}"})
                await b.send({"type": "factorial", "number": 100 + index, "id": f"b{index}"})
            acks_a = [await a.recv() for _ in range(count)]
            acks_b = [await b.recv() for _ in range(count)]
            assert {ack["type"] for ack in acks_a + acks_b} == {"result"}

            proc_a.signal(signal.SIGKILL)
            proc_a.process.wait(15 * UNIT_S)

        replies = [await b.recv(timeout_s=60 * UNIT_S) for _ in range(count)]
        assert {reply["type"] for reply in replies} == {"success"}, replies
        assert {reply["id"] for reply in replies} == {f"b{index}" for index in range(count)}

        # The dead gateway's tasks were on the queue, not in the gateway: they ran, and the
        # surviving gateway serves their results.
        for ack in acks_a:
            reply = await b.request({"type": "result", "task_id": ack["task_id"]}, timeout_s=60 * UNIT_S)
            if reply["type"] == "pending":
                reply = await b.recv(timeout_s=60 * UNIT_S)
            assert reply["type"] == "success", reply
    # Both workers took part: the queue is shared, not split by gateway.
    for worker in two_workers:
        assert "succeeded in" in worker.log()[logged[worker.name] :], worker.name


def _sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += fd.readlink().name.startswith("socket:")
        except OSError:
            continue
    return count


async def test_ws_processes_gateways_share_one_port_and_survive_the_loss_of_one(
    launch: Launcher, system: System
) -> None:
    _, port, children = start_gateways(launch, system.redis_url)
    before = {pid: _sockets(pid) for pid in children}
    url = f"ws://127.0.0.1:{port}/"
    async with contextlib.AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(connect(url)) for _ in range(24)]
        # SO_REUSEPORT spreads connections over both processes (by a hash of the address pair:
        # all 24 on one process has a chance of 2**-23).
        grown = {pid: _sockets(pid) - before[pid] for pid in children}
        assert all(extra > 0 for extra in grown.values()), grown
        await connections[0].send(json.dumps({"type": "factorial", "number": 6}))
        assert json.loads(await connections[0].recv())["type"] == "result"

    # One process killed: the port still serves, through the other.
    os.kill(children[0], signal.SIGKILL)
    # Gone means reaped, not a zombie: a killed process's main thread turns zombie while its
    # other threads still exit, and its listening socket (with the connections the kernel queued
    # on it, which are then reset) lives until the last of them is gone. The supervisor reaps it
    # only after that.
    wait_until(
        lambda: not Path(f"/proc/{children[0]}").exists(), what="the killed gateway process to be reaped"
    )
    for _ in range(5):
        async with client(url) as survivor:
            _, done = await survivor.factorial(7)
            assert done["result"] == 5040


async def test_a_burst_of_submissions_beyond_the_redis_pool_is_queued_not_refused(system: System) -> None:
    """300 requests at once: more concurrent Redis commands than the client pool holds."""
    count = 300
    sockets = await asyncio.gather(*(connect(system.url) for _ in range(count)))
    async with contextlib.AsyncExitStack() as stack:
        for ws in sockets:
            await stack.enter_async_context(ws)
        request = json.dumps({"type": "factorial", "number": 9})
        await asyncio.gather(*(ws.send(request) for ws in sockets))
        acks = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 30 * UNIT_S) for ws in sockets))
        refused = [reply for reply in map(json.loads, acks) if reply["type"] != "result"]
        assert not refused, f"{len(refused)} refused, e.g. {refused[0]}"
        results = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 60 * UNIT_S) for ws in sockets))
    assert [json.loads(result).get("result") for result in results] == [362880] * count
