"""The benchmark's WebSocket load, through the client library, and what every load generator of
the bench shares: the request measured, its timeout, the shares of a total, client processes.

Functions here are synchronous to the caller (each WebSocket scenario runs its own event loop),
so the orchestration in ``bench`` reads as a plain sequence of steps. ``crowd`` spreads thousands
of connections over processes; ``pipelined`` is a cheaper client; ``reference`` is raw Celery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.context import SpawnProcess

import gmpy2

from ..client import Client, FactorialWSError
from .gauges import Rate, gateway_cpu, rate_of, timed

SMALL = 5
SMALL_RESULT = "120"
HARD_LOAD_NUMBER = 300_000  # about 0.2 s of GMP work and 1.5 MB of digits per task
HARD_LOAD_WINDOW = 4  # in flight at once: two running on the hard pool, two queued
REPLY_TIMEOUT_S = 120.0
_CLIENTS_EXIT_S = 5.0


def end_client_processes(processes: Sequence[SpawnProcess], *, failed: bool) -> None:
    """Let the bench's client processes finish (5 s; none after a failure), then kill the rest."""
    for process in processes:
        process.join(0 if failed else _CLIENTS_EXIT_S)
        if process.is_alive():
            process.kill()
            process.join()


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal shares."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def measuring_client(url: str) -> Client:
    """A library client that measures rather than hides: no reconnection (a drop is a failure),
    no pacing of its own (the gateway's rate limit is what is measured), no keepalive pings, and
    straight to the gateway (no proxy, and no look-up of one in the environment at each
    connection: a sixth of a crowd's CPU)."""
    return Client(
        url,
        proxy=None,
        open_timeout_s=REPLY_TIMEOUT_S,
        ping_interval_s=None,
        reconnect=False,
        rate_limit_per_s=None,
    )


# One request through a client, from send to result: True when the exact result came back.
Ask = Callable[[Client], Awaitable[bool]]


async def _small(client: Client) -> str:
    """factorial(5) from send to result, as digits (compared with SMALL_RESULT)."""
    return await asyncio.wait_for(client.factorial(SMALL, digits=True), REPLY_TIMEOUT_S)


async def factorial_5(client: Client) -> bool:
    """The bench's default request: factorial(5), whose digits must be SMALL_RESULT."""
    return await _small(client) == SMALL_RESULT


# --- WebSocket scenarios ---------------------------------------------------------------------------


def ws_latency(url: str, count: int, ask: Ask = factorial_5) -> list[float]:
    """Sequential requests (factorial(5) unless ``ask`` says otherwise) over one connection,
    from send to the result; milliseconds."""
    return asyncio.run(_ws_latency(url, count, ask))


async def _ws_latency(url: str, count: int, ask: Ask) -> list[float]:
    async with measuring_client(url) as client:
        return await _probe(client, count, ask)


async def _probe(client: Client, count: int, ask: Ask = factorial_5) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        exact = await ask(client)
        samples.append((time.perf_counter() - started) * 1000)
        if not exact:
            raise RuntimeError("the gateway replied a wrong result")
    return samples


def ws_throughput(
    url: str,
    count: int,
    connections: int,
    window: int,
    gateway_pid: int | None = None,
    ask: Ask = factorial_5,
) -> Rate:
    """``count`` requests (factorial(5) unless ``ask`` says otherwise) over ``connections``
    connections with ``window`` in flight on each; returns tasks per second (successes only),
    the number of error replies and, with ``gateway_pid``, the gateway's CPU seconds from the
    first request to the last result."""
    return asyncio.run(_ws_throughput(url, count, connections, window, gateway_pid, ask))


async def _ws_throughput(
    url: str, count: int, connections: int, window: int, gateway_pid: int | None, ask: Ask
) -> Rate:
    shares = split(count, connections)
    clients = [measuring_client(url) for _ in range(connections)]
    try:
        for client in clients:
            await client.connect()
        with timed(gateway_cpu(gateway_pid)) as timing:
            outcomes = await asyncio.gather(
                *(
                    _pipeline(client, share, window, ask)
                    for client, share in zip(clients, shares, strict=True)
                )
            )
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
    return rate_of(sum(ok for ok, _ in outcomes), timing, sum(failed for _, failed in outcomes))


async def _pipeline(client: Client, count: int, window: int, ask: Ask) -> tuple[int, int]:
    """``count`` requests, ``window`` in flight: each one that ends lets the next one go."""
    gate = asyncio.Semaphore(window)

    async def one() -> bool:
        async with gate:
            try:
                return await ask(client)
            except FactorialWSError:
                return False

    outcomes = await asyncio.gather(*(one() for _ in range(count)))
    return sum(outcomes), count - sum(outcomes)


def ws_stored_results(url: str, numbers: Sequence[int], window: int) -> list[tuple[str, int]]:
    """Compute ``number!`` for each of ``numbers`` through the gateway (``window`` in flight on
    one connection); the ``(task_id, result)`` of each, once its result is stored."""
    return asyncio.run(_ws_stored_results(url, numbers, window))


async def _ws_stored_results(url: str, numbers: Sequence[int], window: int) -> list[tuple[str, int]]:
    gate = asyncio.Semaphore(window)

    async def one(client: Client, number: int) -> tuple[str, int]:
        async with gate:
            handle = await client.submit(number)
            result = await asyncio.wait_for(handle.result(), REPLY_TIMEOUT_S)
        if result != gmpy2.fac(number):
            raise RuntimeError(f"factorial({number}) came back wrong")
        return handle.task_id, result

    async with measuring_client(url) as client:
        return list(await asyncio.gather(*(one(client, number) for number in numbers)))


def ws_big(url: str, number: int, expected: str) -> float:
    """One large factorial end to end (send to parsed reply); seconds."""
    return asyncio.run(_ws_big(url, number, expected))


async def _ws_big(url: str, number: int, expected: str) -> float:
    async with measuring_client(url) as client:
        started = time.perf_counter()
        digits = await asyncio.wait_for(client.factorial(number, digits=True), REPLY_TIMEOUT_S)
        seconds = time.perf_counter() - started
    if digits != expected:
        raise RuntimeError(f"factorial({number}) came back wrong: {digits[:200]}")
    return seconds


def ws_latency_under_hard_load(url: str, count: int) -> tuple[list[float], int]:
    """factorial(5) latency on one connection while another keeps the hard queue busy."""
    return asyncio.run(_under_hard_load(url, count))


async def _under_hard_load(url: str, count: int) -> tuple[list[float], int]:
    async with measuring_client(url) as probe, measuring_client(url) as heavy:
        stop = asyncio.Event()
        busy = asyncio.Event()
        load = asyncio.create_task(_keep_hard_busy(heavy, stop, busy))
        try:
            await asyncio.wait_for(busy.wait(), REPLY_TIMEOUT_S)
            samples = await _probe(probe, count)
        finally:
            stop.set()
        done = await load
    return samples, done


async def _keep_hard_busy(client: Client, stop: asyncio.Event, busy: asyncio.Event) -> int:
    """HARD_LOAD_WINDOW large factorials in flight, each replaced as it ends, until ``stop``."""

    async def lane() -> int:
        done = 0
        while True:
            await asyncio.wait_for(client.factorial(HARD_LOAD_NUMBER, digits=True), REPLY_TIMEOUT_S)
            done += 1
            busy.set()  # the pool has been working for a while: from now on it is saturated
            if stop.is_set():
                return done

    return sum(await asyncio.gather(*(lane() for _ in range(HARD_LOAD_WINDOW))))
