"""The benchmark's client side: WebSocket load (through the client library), the raw Celery
reference, and bare gmpy2.

Functions here are synchronous to the caller (each WebSocket scenario runs its own event loop),
so the orchestration in ``bench`` reads as a plain sequence of steps. The crowd of thousands of
connections is spread over a few processes, since one asyncio process is the bottleneck there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import math
import multiprocessing
import queue
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from types import TracebackType
from typing import Any, TypeAlias, cast

import gmpy2
import uvloop
from celery import Celery
from celery.result import AsyncResult, ResultSet
from websockets.asyncio.client import ClientConnection, connect

from ..celeryapp import create_app
from ..client import Client, FactorialWSError, TaskHandle
from ..config import Config
from ..constants import HARD_TASK_NAME, SOFT_TASK_NAME
from ..processes import cpu_seconds, raise_open_files_limit, tuned_collector

SETTINGS_VARIABLE = "FACTORIAL_WS_BENCH_CELERY"  # Celery overrides for the sweep's workers
SMALL = 5
SMALL_RESULT = "120"
HARD_LOAD_NUMBER = 300_000  # about 0.2 s of GMP work and 1.5 MB of digits per task
HARD_LOAD_WINDOW = 4  # in flight at once: two running on the hard pool, two queued
REPLY_TIMEOUT_S = 120.0
_CLIENTS_EXIT_S = 5.0
_CONNECT_CONCURRENCY = 64  # handshakes in progress per process (the listen backlog is 100)


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


def _client(url: str) -> Client:
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


async def _small(client: Client) -> str:
    """factorial(5) from send to result, as digits (compared with SMALL_RESULT)."""
    return await asyncio.wait_for(client.factorial(SMALL, digits=True), REPLY_TIMEOUT_S)


# --- raw Celery, the reference ------------------------------------------------------------------


def raw_app(config: Config, redis_url: str) -> Celery:
    """A Celery client with the very settings the workers and gateway use."""
    return create_app(config.replace(redis_url=redis_url))


def raw_latency(app: Celery, count: int) -> list[float]:
    """``task.delay(5).get()`` one after another; milliseconds each."""
    task = app.tasks[SOFT_TASK_NAME]
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        result = task.delay(SMALL).get(timeout=REPLY_TIMEOUT_S)
        samples.append((time.perf_counter() - started) * 1000)
        if result != SMALL_RESULT:
            raise RuntimeError(f"raw Celery returned {result!r}")
    return samples


@dataclass(frozen=True)
class Rate:
    """Requests per second, and the CPU seconds the side measured used meanwhile (the gateway
    process, or this process for the raw Celery client; None when it cannot be read)."""

    per_s: float
    cpu_s: float | None
    errors: int = 0


@contextlib.contextmanager
def _timed(read_cpu: Callable[[], float] | None) -> Iterator[list[float]]:
    """The yielded list then holds the block's wall seconds and the CPU seconds ``read_cpu``
    counted meanwhile (NaN without it)."""
    timing: list[float] = []
    cpu_before = read_cpu() if read_cpu else 0.0
    started = time.perf_counter()
    yield timing
    timing.append(time.perf_counter() - started)
    timing.append(read_cpu() - cpu_before if read_cpu else math.nan)


def gateway_cpu(pid: int | None) -> Callable[[], float] | None:
    """Reads the CPU seconds process ``pid`` has used (None without a process)."""
    return None if pid is None else functools.partial(cpu_seconds, pid)


def _rate(count: int, timing: list[float], errors: int = 0) -> Rate:
    seconds, cpu_s = timing
    return Rate(count / seconds, None if math.isnan(cpu_s) else cpu_s, errors)


def raw_throughput(app: Celery, count: int) -> Rate:
    """Submit ``count`` tasks, then collect every result; tasks per second, and this process's
    CPU time (the raw client runs in it)."""
    task = app.tasks[SOFT_TASK_NAME]
    with _timed(time.process_time) as timing:
        results: list[AsyncResult[Any]] = [task.delay(SMALL) for _ in range(count)]
        values = ResultSet(results).join(timeout=REPLY_TIMEOUT_S)
    if any(value != SMALL_RESULT for value in values):
        raise RuntimeError("raw Celery returned a wrong result")
    for result in results:
        result.forget()
    return _rate(count, timing)


def raw_submissions(app: Celery, count: int) -> Rate:
    """``task.delay(5)`` ``count`` times, with no worker to run them: submissions per second,
    and this process's CPU time."""
    task = app.tasks[SOFT_TASK_NAME]
    with _timed(time.process_time) as timing:
        for _ in range(count):
            task.delay(SMALL)
    return _rate(count, timing)


def raw_lookups(app: Celery, stored: Sequence[tuple[str, int]], count: int) -> Rate:
    """``AsyncResult(id).get()`` of stored results, ``count`` times in turn over ``stored``:
    lookups per second, this process's CPU time, and wrong results as errors. Celery's backend
    keeps the results it has read in a cache; it is emptied before each pass over ``stored``,
    so that every lookup reads Redis, as the gateway's do."""
    errors = 0
    with _timed(time.process_time) as timing:
        for i in range(count):
            if i % len(stored) == 0:
                cast(Any, app.backend)._cache.clear()  # not in Celery's type stubs
            task_id, expected = stored[i % len(stored)]
            errors += int(AsyncResult(task_id, app=app).get(timeout=REPLY_TIMEOUT_S)) != expected
    return _rate(count, timing, errors)


def raw_hard(app: Celery, number: int) -> AsyncResult[Any]:
    return app.tasks[HARD_TASK_NAME].delay(number)


def bare_gmpy2(number: int) -> tuple[float, str]:
    """gmpy2's factorial and its decimal digits, timed alone in this process."""
    started = time.perf_counter()
    digits = str(gmpy2.fac(number).digits())
    return time.perf_counter() - started, digits


# --- WebSocket scenarios ---------------------------------------------------------------------------


def ws_latency(url: str, count: int) -> list[float]:
    """Sequential factorial(5) over one connection, from send to the result; milliseconds."""
    return asyncio.run(_ws_latency(url, count))


async def _ws_latency(url: str, count: int) -> list[float]:
    async with _client(url) as client:
        return await _probe(client, count)


async def _probe(client: Client, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        result = await _small(client)
        samples.append((time.perf_counter() - started) * 1000)
        if result != SMALL_RESULT:
            raise RuntimeError(f"gateway replied {result[:80]!r}")
    return samples


def ws_throughput(
    url: str, count: int, connections: int, window: int, gateway_pid: int | None = None
) -> Rate:
    """``count`` requests over ``connections`` connections with ``window`` in flight on each;
    returns tasks per second (successes only), the number of error replies and, with
    ``gateway_pid``, the gateway's CPU seconds from the first request to the last result."""
    return asyncio.run(_ws_throughput(url, count, connections, window, gateway_pid))


async def _ws_throughput(
    url: str, count: int, connections: int, window: int, gateway_pid: int | None
) -> Rate:
    shares = split(count, connections)
    clients = [_client(url) for _ in range(connections)]
    try:
        for client in clients:
            await client.connect()
        with _timed(gateway_cpu(gateway_pid)) as timing:
            outcomes = await asyncio.gather(
                *(_pipeline(client, share, window) for client, share in zip(clients, shares, strict=True))
            )
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
    return _rate(sum(ok for ok, _ in outcomes), timing, sum(failed for _, failed in outcomes))


async def _pipeline(client: Client, count: int, window: int) -> tuple[int, int]:
    """``count`` requests, ``window`` in flight: each one that ends lets the next one go."""
    gate = asyncio.Semaphore(window)

    async def one() -> bool:
        async with gate:
            try:
                return await _small(client) == SMALL_RESULT
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

    async with _client(url) as client:
        return list(await asyncio.gather(*(one(client, number) for number in numbers)))


def ws_big(url: str, number: int, expected: str) -> float:
    """One large factorial end to end (send to parsed reply); seconds."""
    return asyncio.run(_ws_big(url, number, expected))


async def _ws_big(url: str, number: int, expected: str) -> float:
    async with _client(url) as client:
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
    async with _client(url) as probe, _client(url) as heavy:
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


# --- the crowd: thousands of connections over a few processes ---------------------------------


@dataclass(frozen=True)
class Acked:
    acked: int
    errors: int
    seconds: float


@dataclass(frozen=True)
class Delivered:
    delivered: int
    errors: int
    seconds: float = 0.0  # from the slowest process's start to its last result


class ConcurrencyLoad:
    """``with ConcurrencyLoad(url, n, processes) as crowd:`` opens n connections over a few
    processes, each sending one factorial(5) (or ``number``!, whose digits must have the SHA-256
    ``digits_sha256``); ``wait_acked`` returns once every request has its ack, ``wait_done`` once
    every result came back (or failed)."""

    def __init__(
        self,
        url: str,
        connections: int,
        processes: int,
        *,
        number: int = SMALL,
        digits_sha256: str | None = None,
    ) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._messages: multiprocessing.Queue[tuple[str, int, int, float]] = self._context.Queue()
        self._reports: dict[str, list[tuple[str, int, int, float]]] = {"acked": [], "done": []}
        shares = split(connections, processes)
        self._processes: list[SpawnProcess] = [
            self._context.Process(
                target=crowd_part, args=(url, share, self._messages, number, digits_sha256), daemon=True
            )
            for share in shares
            if share
        ]

    def __enter__(self) -> ConcurrencyLoad:
        for process in self._processes:
            process.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        end_client_processes(self._processes, failed=exc is not None)

    def _collect(self, kind: str) -> list[tuple[str, int, int, float]]:
        """Every process's report of ``kind`` (a fast process may report "done" before a slow
        one reports "acked", so reports are kept by kind)."""
        deadline = time.monotonic() + REPLY_TIMEOUT_S * 2
        while len(self._reports[kind]) < len(self._processes):
            try:
                message = self._messages.get(timeout=1)
            except queue.Empty:
                if time.monotonic() > deadline or not any(p.is_alive() for p in self._processes):
                    raise RuntimeError(f"crowd processes did not report {kind!r}") from None
                continue
            self._reports[message[0]].append(message)
        return self._reports[kind]

    def wait_acked(self) -> Acked:
        parts = self._collect("acked")
        return Acked(sum(p[1] for p in parts), sum(p[2] for p in parts), max(p[3] for p in parts))

    def wait_done(self) -> Delivered:
        parts = self._collect("done")
        return Delivered(sum(p[1] for p in parts), sum(p[2] for p in parts), max(p[3] for p in parts))


Reports: TypeAlias = "multiprocessing.Queue[tuple[str, int, int, float]]"


def crowd_part(
    url: str, count: int, messages: Reports, number: int = SMALL, digits_sha256: str | None = None
) -> None:
    """One crowd process: its share of connections, one request each. It shares the machine's
    cores with the gateway it loads, so it runs as cheaply as the gateway does (uvloop, a tuned
    collector): what it spends on its thousands of connections is taken from the gateway."""
    raise_open_files_limit()
    crowd = (
        _crowd(url, count, messages)
        if digits_sha256 is None
        else _big_crowd(url, count, messages, number, digits_sha256)
    )
    with tuned_collector(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(crowd)


def _report(messages: Reports, kind: str, ok: int, count: int, started: float, reasons: Counter[str]) -> None:
    messages.put((kind, ok, count - ok, time.perf_counter() - started))
    if reasons:
        print(f"crowd: {count - ok} failed: {dict(reasons.most_common(5))}", file=sys.stderr)
        reasons.clear()


async def _crowd(url: str, count: int, messages: Reports) -> None:
    gate = asyncio.Semaphore(_CONNECT_CONCURRENCY)
    reasons: Counter[str] = Counter()
    clients: list[Client] = []
    started = time.perf_counter()

    async def open_one() -> TaskHandle[str] | None:
        client = _client(url)
        async with gate:
            try:
                await client.connect()
                clients.append(client)
                return await asyncio.wait_for(client.submit(SMALL, digits=True), REPLY_TIMEOUT_S)
            except Exception as exc:
                reasons[f"{type(exc).__name__}: {exc}"[:120]] += 1
                return None

    opened = await asyncio.gather(*(open_one() for _ in range(count)))
    handles = [handle for handle in opened if handle is not None]
    _report(messages, "acked", len(handles), count, started, reasons)

    async def result_of(handle: TaskHandle[str]) -> bool:
        with contextlib.suppress(Exception):
            return await asyncio.wait_for(handle.result(), REPLY_TIMEOUT_S) == SMALL_RESULT
        return False

    outcomes = await asyncio.gather(*(result_of(handle) for handle in handles))
    _report(messages, "done", sum(outcomes), len(handles), started, reasons)
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


async def _big_crowd(url: str, count: int, messages: Reports, number: int, digits_sha256: str) -> None:
    """The crowd of scenario 6: each connection asks for ``number``! and reads its reply fragment
    by fragment, hashing the digits as they come; through the library, each 5.6 MB reply would
    be held whole, a thousand times over, in these few processes."""
    gate = asyncio.Semaphore(_CONNECT_CONCURRENCY)
    reasons: Counter[str] = Counter()
    sockets: list[ClientConnection] = []
    started = time.perf_counter()

    async def open_one(index: int) -> ClientConnection | None:
        async with gate:
            try:
                ws = await connect(
                    url, compression=None, max_size=None, ping_interval=None, open_timeout=REPLY_TIMEOUT_S
                )
                sockets.append(ws)
                await ws.send(json.dumps({"type": "factorial", "number": number, "id": index}))
                ack = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S))
            except Exception as exc:
                reasons[f"{type(exc).__name__}: {exc}"[:120]] += 1
                return None
        if ack.get("type") != "result":
            reasons[f"reply {ack}"[:120]] += 1
            return None
        return ws

    async def result_of(ws: ClientConnection) -> bool:
        try:
            return await asyncio.wait_for(_streamed_digits_sha256(ws), REPLY_TIMEOUT_S) == digits_sha256
        except Exception as exc:
            reasons[f"{type(exc).__name__}: {exc}"[:120]] += 1
            return False

    opened = await asyncio.gather(*(open_one(index) for index in range(count)))
    asked = [ws for ws in opened if ws is not None]
    _report(messages, "acked", len(asked), count, started, reasons)
    outcomes = await asyncio.gather(*(result_of(ws) for ws in asked))
    _report(messages, "done", sum(outcomes), len(asked), started, reasons)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def _streamed_digits_sha256(ws: ClientConnection) -> str:
    """The SHA-256 of the result's digits in the next reply, read fragment by fragment, so that a
    thousand replies of millions of digits are never held whole; raises unless it is a success."""
    digest = hashlib.sha256()
    head = b""
    state = "head"
    async for fragment in ws.recv_streaming(decode=False):
        data = fragment if isinstance(fragment, bytes) else fragment.encode()
        if state == "head":
            head += data
            marker = head.find(b'"result": ')
            if marker < 0:
                continue
            state = "digits" if head.startswith(b'{"type": "success"') else "other"
            data = head[marker + len(b'"result": ') :]
        if state == "digits":
            end = len(data) - len(data.lstrip(b"0123456789"))
            digest.update(data[:end])
            if end < len(data):
                state = "tail"
    if state != "tail":
        raise RuntimeError(f"not a success: {head[:200]!r}")
    return digest.hexdigest()
