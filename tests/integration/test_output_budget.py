"""What undelivered results make a gateway process hold is bounded as a whole, not only per
connection: clients that never read, each asking for distinct large results, hold at most
WS_MAX_OUTPUT_BYTES_PER_PROCESS between them. And a client that reads, but too slowly for a
result ever to arrive, is cut off: a result must go out at WS_MIN_OUTPUT_RATE at least.

The results are written straight into Redis (as the workers' backend writes them), so these tests
time the gateway alone, not the workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from factorial_ws.constants import HARD_QUEUE, RESULT_KEY_PREFIX, SUBMITTED_KEY_PREFIX
from factorial_ws.gateway.messages import submitted_record
from factorial_ws.supervisor.probes import memory_kib
from peers import RawPeer, client, ws_text_frame
from support import UNIT_S, Launcher

from .fault_tools import metric

# It times the gateway and measures its memory: run alone, not beside other tests.
pytestmark = pytest.mark.alone

MIB = 1024 * 1024


def store_results(redis_url: str, count: int, digits: int) -> list[str]:
    """``count`` distinct successes of ``digits`` digits each, stored and known as a worker and
    a gateway would leave them; their task ids."""
    task_ids = [str(uuid.uuid4()) for _ in range(count)]
    with redis.Redis.from_url(redis_url) as r:
        for i, task_id in enumerate(task_ids):
            result = str(i % 9 + 1) * digits
            meta = f'{{"status": "SUCCESS", "result": "{result}", "traceback": null, "task_id": "{task_id}"}}'
            pipe = r.pipeline(transaction=False)
            pipe.set(RESULT_KEY_PREFIX + task_id, meta, ex=600)
            pipe.set(SUBMITTED_KEY_PREFIX + task_id, submitted_record(HARD_QUEUE, 1001 + i), ex=600)
            pipe.execute()
    return task_ids


def lookup(task_id: str) -> bytes:
    return ws_text_frame(json.dumps({"type": "result", "task_id": task_id}))


@contextlib.asynccontextmanager
async def raw_peer(url: str, receive_buffer_bytes: int | None = None) -> AsyncIterator[RawPeer]:
    """A TCP client past the WebSocket handshake that reads only when told; with
    ``receive_buffer_bytes``, a small kernel receive buffer, so that what it has not read stays
    in the gateway rather than in its own kernel."""
    host, port = url.removeprefix("ws://").strip("/").rsplit(":", 1)
    sock = socket.socket()
    if receive_buffer_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10 * UNIT_S)
    assert head.startswith(b"HTTP/1.1 101"), head
    try:
        yield RawPeer(reader, writer, head)
    finally:
        writer.close()


async def test_clients_that_never_read_distinct_results_hold_at_most_the_process_budget(
    launch: Launcher,
) -> None:
    # The case, scaled down: 16 connections, 8 distinct 1 MB results each, never read.
    # They are cut in waves of one timeout each: a short one keeps the eight waves short. No
    # client here reads until the last is cut (the honest one reads at once), so however short,
    # it cuts only those that never read.
    budget_bytes = 16 * MIB
    slow_consumer_timeout_s = 1 * UNIT_S
    server = launch.redis(persistent=False)
    gateway, url = launch.gateway(
        server.url,
        WS_MAX_OUTPUT_BYTES_PER_PROCESS=budget_bytes,
        WS_SLOW_CONSUMER_TIMEOUT=slow_consumer_timeout_s,
    )
    task_ids = store_results(server.url, 16 * 8 + 1, 1_000_000)
    honest_id = task_ids.pop()
    rss_before_kib = memory_kib(gateway.pid, "VmRSS")

    async with contextlib.AsyncExitStack() as stack:
        for i in range(16):
            peer = await stack.enter_async_context(raw_peer(url))
            peer.writer.write(b"".join(lookup(task_id) for task_id in task_ids[i * 8 : (i + 1) * 8]))
        sent = time.monotonic()
        dropped_after_s = None
        # They are cut in waves: those holding the budget, after the timeout, then those let in.
        drop_all_s = (128 * MIB / budget_bytes) * slow_consumer_timeout_s + 15 * UNIT_S
        while dropped_after_s is None and time.monotonic() - sent < drop_all_s:
            if metric(url, "factorial_ws_connections_open") == 0:
                dropped_after_s = time.monotonic() - sent
            await asyncio.sleep(0.2)
        grown_mib = (memory_kib(gateway.pid) - rss_before_kib) / 1024  # VmHWM: the peak
        # An honest client still gets a large result afterwards.
        async with client(url) as honest:
            await honest.send({"type": "result", "task_id": honest_id})
            reply = await honest.recv(10 * UNIT_S, keep_ints_as_text=True)
    print(
        f"gateway RSS {rss_before_kib / 1024:.0f} MiB before, peak +{grown_mib:.0f} MiB; "
        f"dropped after {dropped_after_s} s"
    )
    assert reply["type"] == "success" and len(reply["result"]) == 1_000_000
    assert dropped_after_s is not None, "the silent connections were never dropped"
    # 128 MB of distinct results asked for. Held: at most the budget (and one result over it),
    # the reads under way (4 results, each briefly twice), and the allocator's slack.
    assert grown_mib < budget_bytes / MIB + 20, f"gateway RSS grew by {grown_mib:.0f} MiB"


async def test_a_client_reading_a_little_at_a_time_is_cut_off_at_the_minimum_rate(
    launch: Launcher,
) -> None:
    # It reads 1 MiB/s, 64 KiB at a time. The gateway's socket takes the next fragments once
    # its kernel send buffer has room for a share of it (measured: every 1.5 s at most), well
    # within the slow-consumer timeout: only a rate catches it. 20 MB at 5 MB/s at least is 4 s
    # (after the timeout); at its pace, 19 s. By the cut the gateway has sent what the client
    # read (8 MB) and what the kernels' socket buffers hold (about 5 MB), less than the result.
    # The cut is seen at the gateway (its counter and log): the client goes on receiving what
    # those buffers hold. Keepalive pings (which this client does not answer) are off, so they
    # do not end it first.
    size_bytes = 20_000_000
    min_output_rate = 5_000_000
    slow_consumer_timeout_s = 4 * UNIT_S
    read_bytes, read_every_s = 64 * 1024, 1 / 16
    server = launch.redis(persistent=False)
    gateway, url = launch.gateway(
        server.url,
        WS_SLOW_CONSUMER_TIMEOUT=slow_consumer_timeout_s,
        WS_MIN_OUTPUT_RATE=min_output_rate,
        WS_PING_INTERVAL=3600,
    )
    (task_id,) = store_results(server.url, 1, size_bytes)
    cut_after_s = None
    received = 0

    async def read_slowly(peer: RawPeer) -> None:
        nonlocal received
        while chunk := await peer.reader.read(read_bytes):
            received += len(chunk)
            await asyncio.sleep(read_every_s)

    async with raw_peer(url, receive_buffer_bytes=read_bytes) as peer:
        peer.writer.write(lookup(task_id))
        started = time.monotonic()
        # Its pace must not depend on the checks of the counter: /metrics is built once a second,
        # and a read of it waits for a fresh one.
        reading = asyncio.create_task(read_slowly(peer))
        while cut_after_s is None and time.monotonic() - started < slow_consumer_timeout_s + 40 * UNIT_S:
            if await asyncio.to_thread(metric, url, "factorial_ws_slow_consumers_total") == 1:
                cut_after_s = time.monotonic() - started
        reading.cancel()
    print(f"cut off after {cut_after_s} s, {received} bytes read by then")
    assert cut_after_s is not None, f"not cut off; {received} bytes read"
    assert received < size_bytes
    assert cut_after_s < slow_consumer_timeout_s + size_bytes / min_output_rate + 10 * UNIT_S
    assert "not sent within" in gateway.log()
