"""The benchmark's crowd: thousands of connections, one request each, spread over a few client
processes, since one asyncio process is the bottleneck there."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import multiprocessing
import queue
import sys
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from types import TracebackType
from typing import TypeAlias

import uvloop
from websockets.asyncio.client import ClientConnection, connect

from ..client import Client, TaskHandle
from ..gateway.tuning import raise_open_files_limit, tuned_collector
from .load import REPLY_TIMEOUT_S, SMALL, SMALL_RESULT, end_client_processes, measuring_client, split

_CONNECT_CONCURRENCY = 64  # handshakes in progress per process (the listen backlog is 100)


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
        client = measuring_client(url)
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
