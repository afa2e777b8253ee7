"""Results of millions of digits under hostile load: the gateway's memory stays bounded, clients
that never read are dropped as slow consumers, and big results do not overflow Redis' pub/sub
output buffer (left at Redis' default limits here, as an external Redis would be)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path

import gmpy2
import pytest
import redis

from factorial_ws.constants import RESULT_KEY_PREFIX, SERVICE_UNAVAILABLE
from factorial_ws.supervisor.probes import memory_kib
from peers import client, raw_websocket, ws_text_frame
from support import UNIT_S, Launcher, wait_until

from .fault_tools import LONG_NUMBER, assert_success, metric, submit

# It times the system (latency, a stall, recovery): run alone, not beside other tests.
pytestmark = pytest.mark.alone

MIB = 1024 * 1024


def assert_exact(reply: dict[str, object], task_id: str, number: int) -> None:
    """The reply is the success of ``task_id`` with exactly ``number``! (compared through GMP,
    which reads millions of digits in a fraction of a second)."""
    assert reply["type"] == "success" and reply["task_id"] == task_id, str(reply)[:200]
    assert gmpy2.mpz(str(reply["result"])) == gmpy2.fac(number)


async def test_eight_waiters_of_different_big_results_keep_the_result_subscription(
    launch: Launcher,
) -> None:
    server = launch.redis()  # Redis' default limits: pub/sub output buffer 32 MB hard
    # Started side by side: neither waits for the other's start-up.
    _, (gateway, url) = launch.side_by_side(
        lambda: launch.worker(server.url, queues="soft,hard", concurrency=2),
        lambda: launch.gateway(server.url),
    )
    numbers = [LONG_NUMBER - i for i in range(8)]  # 8 results of about 5.5 MB each
    store = redis.Redis.from_url(server.url)

    async with client(url) as waiter, client(url) as probe:
        task_ids = [await submit(waiter, number) for number in numbers]
        # The gateway sleeps while all 8 results are stored: whatever Redis pushes to its result
        # subscription meanwhile piles up in that connection's output buffer.
        gateway.signal(signal.SIGSTOP)
        try:
            keys = [RESULT_KEY_PREFIX + task_id for task_id in task_ids]
            wait_until(lambda: store.exists(*keys) == len(keys), 120 * UNIT_S, "8 results stored")
        finally:
            gateway.signal(signal.SIGCONT)
        # New requests right after the wake-up find the result subscription up.
        reply = await probe.request({"type": "factorial", "number": 5})
        assert reply["type"] == "result", reply
        assert (await probe.recv())["result"] == 120
        replies = {}
        for _ in numbers:
            reply = await waiter.recv(30 * UNIT_S, keep_ints_as_text=True)
            replies[reply["task_id"]] = reply
    for task_id, number in zip(task_ids, numbers, strict=True):
        assert_exact(replies[task_id], task_id, number)
    assert "output buffer limits" not in (Path(server.data_dir) / "redis.log").read_text()
    assert "lost the result subscription" not in gateway.log()
    assert SERVICE_UNAVAILABLE not in gateway.log()


async def test_lookups_from_clients_that_never_read_hold_bounded_memory_and_are_dropped(
    launch: Launcher,
) -> None:
    # Long enough for a few looks at memory and at factorial(5) while the silent ones hold on.
    slow_consumer_timeout_s = 3 * UNIT_S
    server = launch.redis()
    # The result is computed through another gateway, so this one has never held it. The
    # processes start side by side: none waits for another's start-up.
    submitter_url = launch.in_process_gateway(server.url)
    _, (gateway, url) = launch.side_by_side(
        lambda: launch.worker(server.url, queues="soft,hard", concurrency=1),
        lambda: launch.gateway(server.url, WS_SLOW_CONSUMER_TIMEOUT=slow_consumer_timeout_s),
    )
    async with client(submitter_url) as ws:
        task_id = await submit(ws, LONG_NUMBER)
        stored = await ws.recv(60 * UNIT_S, keep_ints_as_text=True)
    assert stored["type"] == "success", str(stored)[:200]
    lookup = ws_text_frame(json.dumps({"type": "result", "task_id": task_id}))
    rss_before_kib = memory_kib(gateway.pid, "VmRSS")

    async with contextlib.AsyncExitStack() as stack, client(url) as bystander:
        # 10 connections send 10 lookups of the stored 1000000! each, and never read a byte.
        for _ in range(10):
            peer = await stack.enter_async_context(raw_websocket(url))
            assert peer.head.startswith(b"HTTP/1.1 101")
            peer.writer.write(lookup * 10)
        sent = time.monotonic()
        slowest_small_s = 0.0
        dropped_after_s = None
        while dropped_after_s is None and time.monotonic() - sent < slow_consumer_timeout_s + 10 * UNIT_S:
            grown_mib = (memory_kib(gateway.pid) - rss_before_kib) / 1024
            assert grown_mib < 150, f"gateway RSS grew by {grown_mib:.0f} MiB"
            started = time.monotonic()
            ack, done = await bystander.factorial(5)
            slowest_small_s = max(slowest_small_s, time.monotonic() - started)
            assert done == {"type": "success", "task_id": ack["task_id"], "result": 120}
            if metric(url, "factorial_ws_connections_open") == 1:  # only the bystander is left
                dropped_after_s = time.monotonic() - sent
            await asyncio.sleep(0.2)
    grown_mib = (memory_kib(gateway.pid) - rss_before_kib) / 1024  # VmHWM: the peak
    print(
        f"gateway RSS {rss_before_kib / 1024:.0f} MiB before, peak +{grown_mib:.0f} MiB; "
        f"factorial(5) meanwhile at most {slowest_small_s * 1000:.0f} ms; "
        f"silent connections dropped after {dropped_after_s} s"
    )
    assert grown_mib < 150
    assert slowest_small_s < 1.0
    assert dropped_after_s is not None, "the silent connections were never dropped"
    assert dropped_after_s < slow_consumer_timeout_s + 4 * UNIT_S
    assert gateway.log().count("slow_consumer") == 10
    # Their task still resolves, for anyone who asks.
    async with client(url) as ws:
        await ws.send({"type": "result", "task_id": task_id})
        assert_success(await ws.recv(30 * UNIT_S, keep_ints_as_text=True), task_id, LONG_NUMBER)
