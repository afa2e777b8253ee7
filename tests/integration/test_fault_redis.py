"""Redis stopped while clients are connected, then started again on the same port and data."""

from __future__ import annotations

import redis

from factorial_ws.constants import SERVICE_UNAVAILABLE
from factorial_ws.gateway.stored_tasks import result_key
from factorial_ws.protocol import new_task_id
from peers import client
from support import UNIT_S, Launcher, paused, wait_until

from .fault_tools import LONG_NUMBER, assert_success, busy_child, submit

# Requests during the outage must be answered within this (generous: 2 busy cores).
PROMPT_S = 3 * UNIT_S


async def test_redis_outage_gets_prompt_errors_then_waiting_and_new_tasks_complete(launch: Launcher) -> None:
    server = launch.redis()
    worker = launch.worker(server.url, concurrency=1)
    gateway, url = launch.gateway(server.url)
    async with client(url) as ws:
        waiting_id = await submit(ws, LONG_NUMBER)
        busy_child(worker.pid)  # the task runs; its result will be stored during the outage
        server.stop()  # SIGTERM: Redis writes its append-only file and exits

        refused = await ws.request({"type": "factorial", "number": 5}, timeout_s=PROMPT_S)
        assert refused == {"type": "error", "result": SERVICE_UNAVAILABLE}
        lookup_id = new_task_id()
        refused = await ws.request({"type": "result", "task_id": lookup_id}, timeout_s=PROMPT_S)
        assert refused == {"type": "error", "result": SERVICE_UNAVAILABLE, "task_id": lookup_id}
        async with client(url) as late:  # a client connecting during the outage too
            refused = await late.request({"type": "factorial", "number": 5}, timeout_s=PROMPT_S)
            assert refused == {"type": "error", "result": SERVICE_UNAVAILABLE}

        # Redis comes back while the gateway is frozen, so the worker stores (and publishes)
        # the result before the gateway has subscribed again: only the catch-up read after
        # the reconnection can deliver it.
        with paused(gateway.pid):
            server = launch.redis(port=server.port)
            wait_until(lambda: _stored(server.url, waiting_id), 60 * UNIT_S, what="the result stored")
        reply = await ws.recv(timeout_s=30 * UNIT_S, keep_ints_as_text=True)
        assert_success(reply, waiting_id, LONG_NUMBER)
        # New work goes through the same gateway and worker, at the first try.
        _, done = await ws.factorial(5)
        assert done["result"] == 120, done
    assert gateway.alive() and worker.alive()


def _stored(redis_url: str, task_id: str) -> bool:
    with redis.Redis.from_url(redis_url) as r:
        return bool(r.exists(result_key(task_id)))
