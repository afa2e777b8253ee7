"""A cheap load of many requests in flight per connection, for the gateway's own ceilings
(acks per second with no worker, stored results per second).

Raw WebSocket connections (websockets' sans-I/O protocol), not the client library: each reply
is one ``json.loads`` and a dictionary look-up, so that the client processes, which share the
machine's cores with the gateway, are not what is measured. Requests carry ids; a connection
keeps ``window`` of them in flight, sending the next one as each reply comes.

The client processes are started once (spawn, like ``ConcurrencyLoad``) and run one round per
job: they connect, meet the bench at a barrier (so neither connecting nor closing is timed),
run, report and close. The bench reads the gateway's CPU time across the barrier and the reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import queue
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Barrier
from types import TracebackType
from typing import TypeAlias

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from ..gateway.tuning import raise_open_files_limit
from ..supervisor.probes import cpu_seconds
from .load import end_client_processes, split

REPLY_TIMEOUT_S = 60.0

# What a request's reply must be: ACK (a "result" reply with a task id, the acknowledgement of a
# factorial request), or the exact integer of a "success" reply.
ACK = None
Expected: TypeAlias = int | None


@dataclass(frozen=True)
class Lane:
    """One connection's requests: frame texts whose ids are their indexes, and what each
    reply must be."""

    frames: tuple[str, ...]
    expected: tuple[Expected, ...]


@dataclass(frozen=True)
class Job:
    """One client process's share of a round."""

    lanes: tuple[Lane, ...]
    window: int


@dataclass(frozen=True)
class Report:
    """One process's round: right replies, errors (wrong, refused or missing), when it started
    and ended (time.monotonic(), comparable across processes on Linux) and its own CPU seconds."""

    ok: int
    errors: int
    started: float
    ended: float
    cpu_s: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """A round over every process: right replies per second of wall time, the gateway's CPU
    seconds and the client processes' (to see whether they, rather than the gateway, limit it)."""

    ok: int
    errors: int
    seconds: float
    gateway_cpu_s: float | None
    clients_cpu_s: float
    reasons: dict[str, int]

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


# --- the pure parts: frames, replies, rounds ---------------------------------------------------


def ack_lane(count: int, number: int) -> Lane:
    """``count`` factorial requests, each to be acknowledged."""
    frames = tuple(json.dumps({"type": "factorial", "number": number, "id": i}) for i in range(count))
    return Lane(frames, (ACK,) * count)


def lookup_lane(stored: Sequence[tuple[str, int]], count: int, offset: int) -> Lane:
    """``count`` lookups of the stored ``(task_id, result)`` pairs, in turn from ``offset``, so
    that connections with different offsets ask for different results at the same time."""
    picks = [stored[(offset + i) % len(stored)] for i in range(count)]
    frames = tuple(
        json.dumps({"type": "result", "task_id": task_id, "id": i}) for i, (task_id, _) in enumerate(picks)
    )
    return Lane(frames, tuple(result for _, result in picks))


def spread(
    requests: int, connections: int, processes: int, window: int, lane: Callable[[int, int], Lane]
) -> list[Job]:
    """``requests`` over ``connections`` over ``processes``: a job per process, whose connection
    number ``index`` (counted over all processes) gets ``lane(count, index)``."""
    jobs = []
    index = 0
    for share, share_connections in zip(
        split(requests, processes), split(connections, processes), strict=True
    ):
        lanes = []
        for count in split(share, share_connections):
            lanes.append(lane(count, index))
            index += 1
        jobs.append(Job(tuple(lanes), window))
    return jobs


def judge(reply: str, outstanding: Mapping[int, Expected]) -> tuple[int | None, str | None]:
    """The id of the outstanding request ``reply`` answers (None if it answers none) and what
    is wrong with it (None if it is the reply expected)."""
    try:
        message = json.loads(reply)
    except ValueError:
        return None, "not JSON"
    if not isinstance(message, dict):
        return None, "not an object"
    request_id = message.get("id")
    if not isinstance(request_id, int) or request_id not in outstanding:
        return None, f"reply to no request: {reply[:80]}"
    expected = outstanding[request_id]
    kind = message.get("type")
    if expected is ACK:
        good = kind == "result" and isinstance(message.get("task_id"), str)
    else:
        good = kind == "success" and message.get("result") == expected
    if good:
        return request_id, None
    return request_id, f"{kind}: {message.get('result')!s:.60}" if kind != "success" else "wrong result"


def combine(reports: Sequence[Report], gateway_cpu_s: float | None) -> Outcome:
    """The processes' reports as one round: wall time from the first start to the last end."""
    reasons: Counter[str] = Counter()
    for report in reports:
        reasons.update(report.reasons)
    seconds = max(r.ended for r in reports) - min(r.started for r in reports)
    return Outcome(
        sum(r.ok for r in reports),
        sum(r.errors for r in reports),
        seconds,
        gateway_cpu_s,
        sum(r.cpu_s for r in reports),
        dict(reasons),
    )


# --- the bench's side ---------------------------------------------------------------------------


class PipelinedLoad:
    """``with PipelinedLoad(url, processes) as load: load.run(jobs, gateway_pid)``, one job per
    process and round."""

    def __init__(self, url: str, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._barrier = context.Barrier(processes + 1)
        self._reports: multiprocessing.Queue[Report] = context.Queue()
        self._commands: list[multiprocessing.Queue[Job | None]] = [context.Queue() for _ in range(processes)]
        self._processes: list[SpawnProcess] = [
            context.Process(
                target=pipelined_part, args=(url, commands, self._reports, self._barrier), daemon=True
            )
            for commands in self._commands
        ]

    def __enter__(self) -> PipelinedLoad:
        for process in self._processes:
            process.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for commands in self._commands:
            commands.put(None)
        end_client_processes(self._processes, failed=exc is not None)

    def run(self, jobs: Sequence[Job], gateway_pid: int | None) -> Outcome:
        """One round: each process connects its lanes; all start together; the gateway's CPU
        seconds are read from that start to the last report."""
        if len(jobs) != len(self._commands):
            raise ValueError("one job per process")
        for commands, job in zip(self._commands, jobs, strict=True):
            commands.put(job)
        self._barrier.wait(REPLY_TIMEOUT_S)  # every connection is open
        cpu_before = cpu_seconds(gateway_pid) if gateway_pid is not None else 0.0
        reports = [self._report() for _ in jobs]
        cpu_s = cpu_seconds(gateway_pid) - cpu_before if gateway_pid is not None else None
        return combine(reports, cpu_s)

    def _report(self) -> Report:
        deadline = time.monotonic() + REPLY_TIMEOUT_S * 2
        while True:
            try:
                return self._reports.get(timeout=1)
            except queue.Empty:
                if time.monotonic() > deadline or not all(p.is_alive() for p in self._processes):
                    raise RuntimeError("a pipelined client process did not report") from None


# --- the client processes -----------------------------------------------------------------------

Reports: TypeAlias = "multiprocessing.Queue[Report]"
Commands: TypeAlias = "multiprocessing.Queue[Job | None]"


def pipelined_part(url: str, commands: Commands, reports: Reports, barrier: Barrier) -> None:
    """One client process: a round per job until it gets None."""
    raise_open_files_limit()
    while (job := commands.get()) is not None:
        reports.put(asyncio.run(_round(url, job, barrier)))


async def _round(url: str, job: Job, barrier: Barrier) -> Report:
    reasons: Counter[str] = Counter()
    connections = await asyncio.gather(*(_open(url, reasons) for _ in job.lanes))
    # Blocking the loop here is harmless: no frame is due on these connections yet.
    barrier.wait(REPLY_TIMEOUT_S)
    started, cpu_before = time.monotonic(), time.process_time()
    outcomes = await asyncio.gather(
        *(_lane(c, lane, job.window, reasons) for c, lane in zip(connections, job.lanes, strict=True))
    )
    ended, cpu_s = time.monotonic(), time.process_time() - cpu_before
    for connection in connections:
        if connection is not None:
            connection.close()
    total = sum(len(lane.frames) for lane in job.lanes)
    ok = sum(outcomes)
    if reasons:
        print(f"pipelined: {total - ok} failed: {dict(reasons.most_common(5))}", file=sys.stderr)
    return Report(ok, total - ok, started, ended, cpu_s, dict(reasons))


class _Connection:
    """A WebSocket client connection driven by websockets' sans-I/O protocol over asyncio
    streams: every reply that one read brings is handled, then every frame they let go is
    written at once, with no task or future per message (websockets' asyncio client spent
    about 0.3 ms of CPU per request here, which at thousands per second is cores)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: ClientProtocol):
        self._reader = reader
        self._writer = writer
        self._protocol = protocol

    @classmethod
    async def open(cls, url: str) -> _Connection:
        uri = parse_uri(url)
        reader, writer = await asyncio.open_connection(uri.host, uri.port)
        connection = cls(reader, writer, ClientProtocol(uri, max_size=None))
        connection._protocol.send_request(connection._protocol.connect())
        connection.flush()
        while connection._protocol.state is State.CONNECTING:
            await connection.receive()
        if connection._protocol.handshake_exc is not None:
            raise connection._protocol.handshake_exc
        return connection

    def send(self, text: bytes) -> None:
        """Queue a text frame; ``flush`` writes what is queued."""
        self._protocol.send_text(text)

    def flush(self) -> None:
        data = self._protocol.data_to_send()
        if data:
            self._writer.write(b"".join(data))

    async def receive(self) -> list[bytes]:
        """The text messages of the next read (the protocol answers pings by itself)."""
        data = await asyncio.wait_for(self._reader.read(1 << 16), REPLY_TIMEOUT_S)
        if not data:
            raise ConnectionError("the gateway closed the connection")
        self._protocol.receive_data(data)
        messages = []
        for event in self._protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                messages.append(bytes(event.data))
            elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                raise ConnectionError("the gateway closed the connection")
        return messages

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._protocol.send_close()
            self.flush()
        self._writer.close()


async def _open(url: str, reasons: Counter[str]) -> _Connection | None:
    try:
        return await asyncio.wait_for(_Connection.open(url), REPLY_TIMEOUT_S)
    except Exception as exc:
        reasons[f"connect: {type(exc).__name__}: {exc}"[:120]] += 1
        return None


async def _lane(connection: _Connection | None, lane: Lane, window: int, reasons: Counter[str]) -> int:
    """Send ``lane``'s frames with ``window`` in flight; the number of right replies."""
    if connection is None:
        return 0
    frames = [frame.encode() for frame in lane.frames]
    outstanding: dict[int, Expected] = {}
    sent = ok = 0

    def send_next() -> None:
        nonlocal sent
        outstanding[sent] = lane.expected[sent]
        connection.send(frames[sent])
        sent += 1

    try:
        while sent < min(window, len(frames)):
            send_next()
        connection.flush()
        while outstanding:
            for reply in await connection.receive():
                request_id, problem = judge(reply.decode(), outstanding)
                if problem is not None:
                    reasons[problem] += 1
                if request_id is None:
                    continue  # an unrequested frame: an error, but no request of ours has ended
                del outstanding[request_id]
                ok += problem is None
                if sent < len(frames):
                    send_next()
            connection.flush()
    except Exception as exc:  # the requests still outstanding count as errors
        reasons[f"{type(exc).__name__}: {exc}"[:120]] += 1
    return ok
