"""``Client``: one WebSocket connection to the gateway, kept open, shared by every request.

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
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from ..limits import TokenBucket
from .errors import ClientClosed, ConnectionFailed, ConnectionLost, FactorialWSError, HandshakeRefused
from .wire import FINAL_STATES, Reply, Request, Step, backoff_delay_s, digits_to_int, parse_reply

logger = logging.getLogger(__name__)

ResultT = TypeVar("ResultT", int, str)


class _Pending:
    """A request of a caller, as the connection tracks it."""

    def __init__(self, request: Request) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.accepted: asyncio.Future[str] = loop.create_future()  # the task id
        self.outcome: asyncio.Future[str] = loop.create_future()  # the digits (a cancel's outcome)
        self.changed = asyncio.Event()  # set, and replaced, at each new state of the request
        self.request_id = -1  # of the current ask
        self.generation = -1  # the connection the current ask went out on
        self.retry_since: float | None = None  # first "not now" error of a run of them
        self.retries = 0
        if request.task_id is not None:
            self.accepted.set_result(request.task_id)

    def notify(self) -> None:
        """Wake whoever waits for the request's next state."""
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class TaskHandle(Generic[ResultT]):
    """A submitted factorial: ``task_id`` at once, the result when awaited.

        handle = await client.submit(1000000, progress=True)
        print(handle.task_id)
        async for state in handle.states():   # pending, queued, started, done
            print(state, handle.ahead)
        n = await handle          # or: await handle.result()

    Awaiting may be cancelled (``asyncio.timeout``) and started again: the request goes on.
    ``await handle.cancel()`` takes the task back (see ``Client.cancel``); awaiting the handle
    then raises ``TaskCancelled``.

    ``state``: ``pending`` once acked; with ``progress=True`` also ``queued`` (``ahead``: tasks
    that were before it in its queue when it was sent) and ``started`` (a worker runs it); in
    the end ``done``, ``error`` or ``cancelled``. Without ``progress`` the gateway sends no
    states between the ack and the result.
    """

    def __init__(self, client: Client, pending: _Pending, convert: Callable[[str], ResultT]) -> None:
        self._client = client
        self._pending = pending
        self._convert: Callable[[str], ResultT] = convert

    @property
    def task_id(self) -> str:
        return self._pending.accepted.result()

    @property
    def number(self) -> int | None:
        return self._pending.request.number

    @property
    def state(self) -> str:
        return self._pending.request.state

    @property
    def ahead(self) -> int | None:
        """From the ``queued`` reply: tasks ahead of this one in its queue when it was sent."""
        return self._pending.request.ahead

    async def states(self) -> AsyncIterator[str]:
        """Every state of the request, from the first, as it comes; ends with the final one."""
        seen = 0
        while True:
            changed = self._pending.changed
            history = self._pending.request.history
            while seen < len(history):
                seen += 1
                yield history[seen - 1]
            if self.state in FINAL_STATES:
                return
            await changed.wait()

    async def cancel(self) -> bool:
        """Take the task back: True once cancelled, False if it had ended first."""
        return await self._client.cancel(self.task_id)

    def done(self) -> bool:
        return self._pending.outcome.done()

    async def result(self) -> ResultT:
        # Shielded: a caller's timeout must not cancel the future that other awaits share.
        return self._convert(await asyncio.shield(self._pending.outcome))

    def __await__(self) -> Generator[Any, None, ResultT]:
        return self.result().__await__()

    def __repr__(self) -> str:
        state = "done" if self.done() else "waiting"
        return f"<TaskHandle {self.task_id} {state}>"


class Client:
    """An asyncio client of the factorial-ws gateway.

        async with Client("ws://localhost:25000/", token="…") as client:
            n = await client.factorial(5)                     # 120, an exact int
            digits = await client.factorial(100000, digits=True)  # the decimal digits, a str

    ``url``: ``ws://`` or ``wss://``; ``token``: sent as ``Authorization: Bearer``; ``ssl``: the
    context for ``wss://`` (e.g. ``ssl.create_default_context(cafile="ca.pem")`` for a private
    certificate authority); ``proxy``: websockets' option, ``True`` for the proxy the environment
    names (``https_proxy`` and the like, looked up at each connection), a proxy URL, or ``None``
    to connect directly.

    Timeouts: ``open_timeout_s`` for each handshake; keepalive pings every ``ping_interval_s``
    (``None``: none), the connection counts as lost without an answer within ``ping_timeout_s``.

    Reconnection: after a drop the client reconnects, waiting ``backoff_initial_s`` doubling up to
    ``backoff_max_s`` (with jitter) between attempts, and gives up after ``reconnect_timeout_s``
    without a connection (``None``: never); everything awaited then raises ``ConnectionLost``,
    and so does every later call. ``reconnect=False``: give up at the first drop.

    Limits: frames are paced to ``rate_limit_per_s`` with bursts of ``rate_limit_burst`` (9/10
    of the gateway's defaults, 200/s and 400, leaving room for frames that the network delays
    and then delivers together; ``None``: no pacing), so a busy client is not refused.

    ``on_frame`` is called with the text of every frame received, before it is handled (the
    ``factorial-ws client`` command prints them).
    """

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
        on_frame: Callable[[str], object] | None = None,
    ) -> None:
        self.url = url
        self._connect_options: dict[str, Any] = {
            "additional_headers": {"Authorization": f"Bearer {token}"} if token else None,
            "open_timeout": open_timeout_s,
            "ping_interval": ping_interval_s,
            "ping_timeout": ping_timeout_s,
            "max_size": None,  # a result can have millions of digits
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
        self._waiting: dict[_Pending, None] = {}  # every request awaited, in call order
        self._by_id: dict[str, _Pending] = {}  # by the id of its current ask
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

    async def __aenter__(self) -> Client:
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

    # --- requests ----------------------------------------------------------------------------

    @overload
    async def factorial(self, number: int, *, digits: Literal[False] = False) -> int: ...
    @overload
    async def factorial(self, number: int, *, digits: Literal[True]) -> str: ...
    async def factorial(self, number: int, *, digits: bool = False) -> int | str:
        """``number``! as an exact int (or its decimal digits with ``digits=True``)."""
        pending = await self._accepted(self._register(Request(number=_checked(number))))
        return await self._result(pending, digits)

    @overload
    async def submit(
        self, number: int, *, digits: Literal[False] = False, progress: bool = False
    ) -> TaskHandle[int]: ...
    @overload
    async def submit(
        self, number: int, *, digits: Literal[True], progress: bool = False
    ) -> TaskHandle[str]: ...
    async def submit(
        self, number: int, *, digits: bool = False, progress: bool = False
    ) -> TaskHandle[int] | TaskHandle[str]:
        """Send a factorial request and return once the gateway has acked it, with a handle
        holding the task id; the handle is awaited for the result. With ``progress`` the handle's
        ``state`` follows the task: queued (and how many are ahead), started."""
        request = Request(number=_checked(number), progress=progress)
        return self._handle(await self._accepted(self._register(request)), digits)

    @overload
    def watch(
        self, task_id: str, *, digits: Literal[False] = False, progress: bool = False
    ) -> TaskHandle[int]: ...
    @overload
    def watch(self, task_id: str, *, digits: Literal[True], progress: bool = False) -> TaskHandle[str]: ...
    def watch(
        self, task_id: str, *, digits: bool = False, progress: bool = False
    ) -> TaskHandle[int] | TaskHandle[str]:
        """A handle for a task submitted before (as ``lookup``, which awaits it at once); with
        ``progress`` its ``state`` says when a worker starts it."""
        return self._handle(self._register(Request(task_id=task_id, progress=progress)), digits)

    def _handle(self, pending: _Pending, digits: bool) -> TaskHandle[int] | TaskHandle[str]:
        if digits:
            return TaskHandle(self, pending, str)
        return TaskHandle(self, pending, digits_to_int)

    async def cancel(self, task_id: str) -> bool:
        """Take a task back. A task this client's connection created, that nobody else waits
        for, is revoked: never run, or stopped. Otherwise (others wait for it, or the connection
        that created it is gone: after a reconnection too) only this client's waits end and the
        computation goes on. True once cancelled: every request of this client waiting for it
        then raises ``TaskCancelled``. False if the task had ended first: its requests get its
        outcome. Raises ``UnknownTaskId`` for an id the gateway does not know, and
        ``TaskNotCancelled`` when this client neither created nor waits for the task."""
        pending = self._register(Request(cancel=task_id))
        try:
            outcome = await asyncio.shield(pending.outcome)
        except asyncio.CancelledError:
            self._forget(pending)
            raise
        return outcome == "cancelled"

    @overload
    async def lookup(self, task_id: str, *, digits: Literal[False] = False) -> int: ...
    @overload
    async def lookup(self, task_id: str, *, digits: Literal[True]) -> str: ...
    async def lookup(self, task_id: str, *, digits: bool = False) -> int | str:
        """The result of a task submitted before (from any connection, to any gateway of the
        same Redis, within its ``RESULT_EXPIRES``); waits if it is still running."""
        return await self._result(self._register(Request(task_id=task_id)), digits)

    def _register(self, request: Request) -> _Pending:
        if self._finished is not None:
            raise self._finished
        if self._reader is None:
            raise ClientClosed("not connected: use `async with Client(...)` or `await client.connect()`")
        pending = _Pending(request)
        self._waiting[pending] = None
        self._ask(pending)
        return pending

    async def _accepted(self, pending: _Pending) -> _Pending:
        try:
            await asyncio.shield(pending.accepted)
        except asyncio.CancelledError:
            self._forget(pending)
            raise
        return pending

    async def _result(self, pending: _Pending, digits: bool) -> int | str:
        try:
            text = await asyncio.shield(pending.outcome)
        except asyncio.CancelledError:
            self._forget(pending)  # nobody else holds this request
            raise
        return text if digits else digits_to_int(text)

    def _forget(self, pending: _Pending) -> None:
        self._drop(pending)
        pending.accepted.cancel()
        pending.outcome.cancel()

    # --- sending -----------------------------------------------------------------------------

    def _ask(self, pending: _Pending) -> None:
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
        self._outbox.put_nowait((ws, pending.request.frame(pending.request_id)))

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

    def _step(self, pending: _Pending, step: Step) -> None:
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

    def _ask_later(self, pending: _Pending) -> None:
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

    def _drop(self, pending: _Pending) -> None:
        """No longer awaited: no more asks, and late replies to it are ignored."""
        self._waiting.pop(pending, None)
        self._by_id.pop(str(pending.request_id), None)

    def _fail(self, pending: _Pending, error: FactorialWSError) -> None:
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
        started = time.monotonic()
        last = "no attempt made"
        for attempt in itertools.count():
            delay_s = backoff_delay_s(attempt, *self._backoff)
            if self._reconnect_timeout_s is not None:
                left_s = self._reconnect_timeout_s - (time.monotonic() - started)
                if left_s <= 0:
                    break
                delay_s = min(delay_s, left_s)
            await asyncio.sleep(delay_s)
            try:
                ws = await self._open()
            except HandshakeRefused as exc:
                if exc.status_code < 500:  # a token or origin refused now is refused for good
                    raise
                last = exc.message
            except ConnectionFailed as exc:
                if isinstance(exc.__cause__, ssl_module.SSLCertVerificationError):
                    raise
                last = exc.message
            else:
                logger.info("reconnected to %s after %d attempts", self.url, attempt + 1)
                return ws
            logger.info("reconnecting to %s: %s", self.url, last)
        raise ConnectionLost(
            f"{self.url}: the connection was lost and could not be opened again "
            f"within {self._reconnect_timeout_s:g} s: {last}"
        )


def _checked(number: int) -> int:
    if not isinstance(number, int) or isinstance(number, bool):
        raise TypeError(f"number must be an int, not {type(number).__name__}")
    return number


def _resolve(future: asyncio.Future[str], value: str) -> None:
    if not future.done():
        future.set_result(value)


# --- one line per connection problem ------------------------------------------------------------


def describe_refusal(url: str, exc: InvalidStatus) -> str:
    """``url: refused: HTTP 401 Missing or wrong token`` (the status and the gateway's reason)."""
    response = exc.response
    reason = response.body.decode(errors="replace").strip().splitlines() if response.body else []
    text = reason[0] if reason else response.reason_phrase
    return f"{url}: the gateway refused the connection: HTTP {response.status_code} {text}"


def describe_failure(url: str, exc: BaseException, open_timeout_s: float) -> str:
    """One line naming why a connection could not be opened."""
    if isinstance(exc, ssl_module.SSLCertVerificationError):
        cause = f"the server's TLS certificate is not trusted ({exc.verify_message})"
    elif isinstance(exc, ssl_module.SSLError | ConnectionResetError) and url.startswith("wss://"):
        cause = f"TLS handshake failed ({_text_of(exc)}); is it a plain ws:// server?"
    elif isinstance(exc, ConnectionRefusedError):
        cause = "connection refused; is the gateway running?"
    elif isinstance(exc, TimeoutError):
        cause = f"no answer within {open_timeout_s:g} s"
    elif isinstance(exc, InvalidURI):
        cause = f"not a WebSocket URL ({exc.msg})"
    elif isinstance(exc, WebSocketException) and url.startswith("ws://"):
        cause = f"no valid WebSocket handshake ({exc}); if the gateway serves TLS, use wss://"
    else:
        cause = _text_of(exc)
    return f"{url}: cannot connect: {cause}"


def _text_of(exc: BaseException) -> str:
    if isinstance(exc, ssl_module.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
