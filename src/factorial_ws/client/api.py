"""``Client``: the requests a caller makes (factorial, submit, watch, call, cancel, lookup), on
the connection it keeps (``connection.py``), awaited until their replies come."""

from __future__ import annotations

import asyncio
from typing import Any, Literal, overload

from .connection import Connection
from .handle import Pending, TaskHandle
from .wire import Request, call_fields, call_result, digits_to_int


class Client(Connection):
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
    and then delivers together; ``None``: no pacing), so a busy client is not refused. A reply
    larger than ``max_reply_bytes`` is not read (``None``: any size): the default holds the
    largest reply of a gateway with the default ``MAX_NUMBER`` (1000000!, 5.6 MB), so a broken
    or hostile server cannot make the client buffer more; raise it for a gateway with a larger
    ``MAX_NUMBER``. Every request awaited on the connection that got such a frame then raises
    ``ReplyTooLarge``, and the client reconnects for the others.

    ``on_frame`` is called with the text of every frame received, before it is handled (the
    ``factorial-ws client`` command prints them).
    """

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

    async def call(self, name: str, /, **params: Any) -> Any:
        """Call the catalog task ``name`` with ``params``; its result, any JSON value (a task
        that raised raises ``TaskFailed``, bad parameters ``InvalidRequest``)."""
        handle = await self.submit_call(name, **params)
        return await handle

    async def submit_call(self, name: str, /, *, progress: bool = False, **params: Any) -> TaskHandle[Any]:
        """Send a catalog task's request and return once the gateway has acked it, with a handle
        as ``submit`` gives; with ``progress`` its ``state`` also goes ``progress`` at each of the
        task's own states, whose meta is the handle's ``info``."""
        request = Request(call=call_fields(name, params), progress=progress)
        return TaskHandle(self, await self._accepted(self._register(request)), call_result)

    def _handle(self, pending: Pending, digits: bool) -> TaskHandle[int] | TaskHandle[str]:
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

    async def _accepted(self, pending: Pending) -> Pending:
        try:
            await asyncio.shield(pending.accepted)
        except asyncio.CancelledError:
            self._forget(pending)
            raise
        return pending

    async def _result(self, pending: Pending, digits: bool) -> int | str:
        try:
            text = await asyncio.shield(pending.outcome)
        except asyncio.CancelledError:
            self._forget(pending)  # nobody else holds this request
            raise
        return text if digits else digits_to_int(text)


def _checked(number: int) -> int:
    if not isinstance(number, int) or isinstance(number, bool):
        raise TypeError(f"number must be an int, not {type(number).__name__}")
    return number
