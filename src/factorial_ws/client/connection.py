"""``Connection``: one WebSocket connection to the gateway, kept open, shared by every request;
``Client`` (``api.py``) makes its requests on it.

Every request carries an ``id`` of its own, which every reply echoes, so any number of requests
can be in flight at once and replies are matched whatever order they come in. One reader task
reads every frame; when the connection drops it reconnects (backoff with jitter) and asks again,
by task id, for everything still awaited (see ``wire`` for the rules), so an ``await`` survives
a gateway restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl as ssl_module
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Literal, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.frames import Close, CloseCode

from ..limits import TokenBucket
from .errors import (
    ClientClosed,
    ConnectionFailed,
    ConnectionLost,
    FactorialWSError,
    HandshakeRefused,
    ReplyTooLarge,
    RequestTooLarge,
    describe_failure,
    describe_refusal,
)
from .handle import Pending
from .reconnection import reopen
from .wire import MAX_REPLY_BYTES, Reply, Request, Step, backoff_delay_s, parse_reply

logger = logging.getLogger(__name__)


class Connection:
    """The connection under ``Client``, whose docstring describes these options: it opens and
    closes, asks each request awaited, reads the replies, reconnects and asks again."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        proxy: str | Literal[True] | None = True,
        # Timeouts
        open_timeout_s: float = 10.0,
        ping_interval_s: float | None = 20.0,
        ping_timeout_s: float | None = 20.0,
        # Reconnection
        reconnect: bool = True,
        reconnect_timeout_s: float | None = 60.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        # Limits
        rate_limit_per_s: float | None = 180.0,
        rate_limit_burst: int = 360,
        max_reply_bytes: int | None = MAX_REPLY_BYTES,
        on_frame: Callable[[str], object] | None = None,
    ) -> None:
        self.url = url
        self._connect_options: dict[str, Any] = {
            "additional_headers": {"Authorization": f"Bearer {token}"} if token else None,
            "open_timeout": open_timeout_s,
            "ping_interval": ping_interval_s,
            "ping_timeout": ping_timeout_s,
            "max_size": max_reply_bytes,
            "compression": None,
            "proxy": proxy,
        }
        if ssl is not None:
            self._connect_options["ssl"] = ssl
        self._open_timeout_s = open_timeout_s
        self._reconnect = reconnect
        self._reconnect_timeout_s = reconnect_timeout_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._rate_limit_per_s = rate_limit_per_s
        self._bucket = None if rate_limit_per_s is None else TokenBucket(rate_limit_per_s, rate_limit_burst)
        self._on_frame = on_frame

        self._ws: ClientConnection | None = None
        self._generation = 0
        self._ids = itertools.count()
        self._waiting: dict[Pending, None] = {}  # every request awaited, in call order
        self._by_id: dict[str, Pending] = {}  # by the id of its current ask
        self._reader: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[tuple[ClientConnection, str]] = asyncio.Queue()
        self._background: set[asyncio.Task[None]] = set()
        self._finished: FactorialWSError | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection; raises ``ConnectionFailed`` (``HandshakeRefused`` for an HTTP
        error) at once rather than retrying: a wrong URL or token is not worth waiting for."""
        if self._reader is not None:
            raise RuntimeError("the client is already connected")
        ws = await self._open()
        self._reader = asyncio.create_task(self._run(ws), name="factorial-ws-client")
        self._spawn(self._write())

    async def close(self) -> None:
        """Close the connection; requests still awaited raise ``ClientClosed``."""
        self._finish(ClientClosed("the client is closed"))
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """Whether a connection is open right now (False while reconnecting)."""
        return self._ws is not None

    # --- the requests awaited ---------------------------------------------------------------

    def _register(self, request: Request) -> Pending:
        if self._finished is not None:
            raise self._finished
        if self._reader is None:
            raise ClientClosed("not connected: use `async with Client(...)` or `await client.connect()`")
        pending = Pending(request)
        self._waiting[pending] = None
        self._ask(pending)
        return pending

    def _forget(self, pending: Pending) -> None:
        self._drop(pending)
        pending.accepted.cancel()
        pending.outcome.cancel()

    # --- sending -----------------------------------------------------------------------------

    def _ask(self, pending: Pending) -> None:
        """Ask on the current connection, unless this connection has been asked already or
        there is none (the reconnection asks then). The request id is taken here, in call
        order, and one writer sends the frames in that order."""
        ws = self._ws
        if ws is None or pending.generation == self._generation or pending.outcome.done():
            return
        pending.generation = self._generation
        self._by_id.pop(str(pending.request_id), None)
        pending.request_id = next(self._ids)
        self._by_id[str(pending.request_id)] = pending
        frame = pending.request.frame(pending.request_id)
        pending.frame_bytes = len(frame.encode())
        self._outbox.put_nowait((ws, frame))

    async def _write(self) -> None:
        while True:
            ws, frame = await self._outbox.get()
            await self._pace()
            # A connection lost meanwhile is the reader's business: it reconnects, asks again.
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame)

    async def _pace(self) -> None:
        if self._bucket is None or self._rate_limit_per_s is None:
            return
        while not self._bucket.take():
            await asyncio.sleep(1.0 / self._rate_limit_per_s)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- receiving ---------------------------------------------------------------------------

    async def _run(self, ws: ClientConnection) -> None:
        """Read until the connection drops, reconnect, ask again; until closed or given up."""
        try:
            while True:
                await self._read(ws)
                self._ws = None
                self._fail_if_sent_too_much(ws)
                ws = await self._reopen()
                for pending in list(self._waiting):
                    self._ask(pending)
        except FactorialWSError as exc:
            self._finish(exc)
        except Exception as exc:  # a bug here must not leave callers waiting forever
            logger.exception("factorial-ws client failed")
            self._finish(FactorialWSError(f"client failure: {exc!r}"))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    if self._on_frame is not None:
                        self._on_frame(frame)
                    self._dispatch(frame)
        except ConnectionClosed:
            pass

    def _fail_if_sent_too_much(self, ws: ClientConnection) -> None:
        """A connection closed for a frame too big (1009). When websockets closed it, a reply was
        over ``max_size``: it was not read, so the request it answered is unknown, and asking
        again would bring it again; every request awaited fails instead of being asked again.
        When the gateway closed it, a request's frame was over its WS_MAX_MESSAGE_BYTES: the
        largest asked on that connection fails alone, rather than be sent at every reconnection."""
        protocol = ws.protocol
        if protocol.close_rcvd_then_sent and _is_too_big(protocol.close_rcvd):
            self._fail_largest_ask(
                RequestTooLarge(f"{self.url}: the gateway refused the request's frame as too large")
            )
        elif not protocol.close_rcvd_then_sent and _is_too_big(protocol.close_sent):
            max_size = self._connect_options["max_size"]
            error = ReplyTooLarge(
                f"{self.url}: the gateway sent a frame over max_reply_bytes ({max_size} bytes)"
            )
            for pending in list(self._waiting):
                self._fail(pending, error)

    def _fail_largest_ask(self, error: RequestTooLarge) -> None:
        asked = [pending for pending in self._waiting if pending.generation == self._generation]
        if asked:
            self._fail(max(asked, key=lambda pending: pending.frame_bytes), error)

    def _dispatch(self, frame: str) -> None:
        try:
            reply = parse_reply(frame)
        except ValueError:
            logger.warning("ignored a reply that is not a JSON object: %.80r", frame)
            return
        pending = self._by_id.get(reply.request_id) if reply.request_id is not None else None
        if pending is not None:
            self._step(pending, pending.request.on_reply(reply))
        elif reply.request_id is None and reply.type == "error":
            self._resynchronise(reply)

    def _step(self, pending: Pending, step: Step) -> None:
        request = pending.request
        if step is Step.ACKED:
            assert request.task_id is not None
            _resolve(pending.accepted, request.task_id)
        elif step is Step.DONE:
            value = request.cancel_outcome if request.is_cancel else request.digits
            assert value is not None
            self._drop(pending)
            _resolve(pending.outcome, value)
        elif step is Step.FAILED:
            assert request.error is not None
            self._fail(pending, request.error)
        elif step is Step.ASK_AGAIN:
            pending.generation = -1
            self._ask(pending)
        elif step is Step.ASK_LATER:
            self._ask_later(pending)
        if step is not Step.ASK_LATER:
            pending.retry_since, pending.retries = None, 0
        if step in (Step.ACKED, Step.PROGRESS, Step.DONE):
            pending.notify()  # FAILED notifies in _fail

    def _ask_later(self, pending: Pending) -> None:
        """Ask again after a delay, for as long as a reconnection would be tried."""
        now = time.monotonic()
        pending.retry_since = pending.retry_since or now
        patience_s = self._reconnect_timeout_s
        if patience_s is not None and now - pending.retry_since > patience_s:
            assert pending.request.error is not None
            self._fail(pending, pending.request.error)
            return
        delay_s = backoff_delay_s(pending.retries, *self._backoff)
        pending.retries += 1
        pending.generation = -1
        asyncio.get_running_loop().call_later(delay_s, self._ask, pending)

    def _resynchronise(self, reply: Reply) -> None:
        """An error without an ``id`` (the gateway could not read one from the frame) belongs to
        a request we cannot name, which would then wait forever. The only safe way on: a new
        connection, on which every request is asked again."""
        logger.warning("error reply without a request id (%s): reconnecting to ask again", reply.result)
        if self._ws is not None:
            self._spawn(self._ws.close())

    def _drop(self, pending: Pending) -> None:
        """No longer awaited: no more asks, and late replies to it are ignored."""
        self._waiting.pop(pending, None)
        self._by_id.pop(str(pending.request_id), None)

    def _fail(self, pending: Pending, error: FactorialWSError) -> None:
        self._drop(pending)
        pending.request.fail(error)
        for future in (pending.accepted, pending.outcome):
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a caller that stopped waiting is no error
        pending.notify()

    def _finish(self, error: FactorialWSError) -> None:
        """No more requests: everything awaited, and every later call, raises ``error``."""
        if self._finished is None:
            self._finished = error
        for pending in list(self._waiting):
            self._fail(pending, error)

    # --- connecting --------------------------------------------------------------------------

    async def _open(self) -> ClientConnection:
        try:
            ws = await connect(self.url, **self._connect_options)
        except InvalidStatus as exc:
            raise HandshakeRefused(describe_refusal(self.url, exc), exc.response.status_code) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise ConnectionFailed(describe_failure(self.url, exc, self._open_timeout_s)) from exc
        self._generation += 1
        self._ws = ws
        return ws

    async def _reopen(self) -> ClientConnection:
        """A new connection after a drop, or ``ConnectionLost``."""
        if not self._reconnect:
            raise ConnectionLost(f"{self.url}: the connection was lost")
        return await reopen(self._open, self.url, self._reconnect_timeout_s, self._backoff)


def _resolve(future: asyncio.Future[str], value: str) -> None:
    if not future.done():
        future.set_result(value)


def _is_too_big(close: Close | None) -> bool:
    return close is not None and close.code == CloseCode.MESSAGE_TOO_BIG
