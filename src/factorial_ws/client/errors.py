"""Exceptions of the client library: one root class, one subclass per error message of the
protocol (docs/protocol.md), and a few for the connection itself.

    try:
        n = await client.factorial(5)
    except factorial_ws.InvalidRequest as exc:
        print(exc.message)        # "Invalid request: 'number' must not be negative"
    except factorial_ws.FactorialWSError as exc:
        print("failed:", exc)

An error reply whose message the library does not know raises the root class itself, so a newer
gateway's messages are still caught by ``except FactorialWSError``.
"""

from __future__ import annotations

import ssl as ssl_module

from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException

from ..constants import (
    CLIENT_BUSY,
    CLIENT_STORED_TOO_MUCH,
    HARD_QUEUE_FULL,
    INVALID_REQUEST,
    JSON_DECODE_ERROR,
    RATE_LIMITED,
    SERVER_BUSY,
    SERVICE_UNAVAILABLE,
    STORAGE_FULL,
    STORAGE_NEARLY_FULL,
    TASK_CANCELLED,
    TASK_FAILED,
    TASK_NOT_CANCELLED,
    TASK_NOT_YOURS,
    TASK_REVOKED,
    TIMEOUT_ERROR,
    TOO_MANY_IN_FLIGHT,
    UNKNOWN_TASK,
    UNKNOWN_TASK_ID,
    WORKER_LOST,
)


class FactorialWSError(Exception):
    """Root of every error the client raises. ``message`` is the gateway's error text as sent
    (or a description of a connection problem); ``task_id`` is set when it concerns a task."""

    def __init__(self, message: str, task_id: str | None = None) -> None:
        super().__init__(message if task_id is None else f"{message} (task {task_id})")
        self.message = message
        self.task_id = task_id


# --- error replies, named after the protocol's messages ----------------------------------------


class JSONDecodeFailed(FactorialWSError):
    """``JSON decode error``: the gateway could not parse a frame (never sent by this library)."""


class UnknownTask(FactorialWSError):
    """``Unknown task``: a request ``type`` the gateway does not know."""


class InvalidRequest(FactorialWSError):
    """``Invalid request: …``: e.g. a number out of range, a malformed task id."""


class TaskTimeout(FactorialWSError):
    """``Timeout error``: the task ran past its time limit and was killed. (A gateway that only
    stopped waiting also says ``Timeout error``; the client then asks again by task id and raises
    this only once the task itself is known to have timed out.)"""


class UnknownTaskId(FactorialWSError):
    """``Unknown task id``: never submitted, or its result has expired."""


class ServiceUnavailable(FactorialWSError):
    """``Service unavailable``: the gateway cannot reach Redis right now; try again later."""


class ServerBusy(FactorialWSError):
    """``Server busy``: the gateway itself is overloaded (Redis is fine); try again later."""


class HardQueueFull(ServerBusy):
    """``Server busy: too many large tasks queued``: the ``hard`` queue is at its limit."""


class StorageNearlyFull(ServerBusy):
    """``Server busy: storage nearly full``: Redis is past the gateway's high-water mark of its
    memory (REDIS_MEMORY_HIGH_WATER), so new large tasks wait; small ones and lookups go on."""


class TooManyInFlight(FactorialWSError):
    """``Too many tasks in flight``: this connection already waits for the gateway's maximum."""


class TooManyQueued(FactorialWSError):
    """``Too many large tasks queued from this address``: this client address already has its
    budget of large numbers waiting in the queue (counted in their digits); wait until workers
    have taken some."""


class StoredTooMuch(FactorialWSError):
    """``Too much stored from this address; retry later``: results computed for this client
    address fill its share of Redis (counted while they are kept, an hour by default); results
    stored already, and lookups, still work."""


class RateLimited(FactorialWSError):
    """``Rate limit exceeded``: more requests per second than the gateway allows a connection."""


class TaskFailed(FactorialWSError):
    """``Task failed``: the task raised an error (details stay in the worker's log)."""


class WorkerLost(TaskFailed):
    """``Task failed: its worker died on every attempt``."""


class StorageFull(TaskFailed):
    """``Task failed: storage full``: the task ran, but Redis was full when its result came to be
    stored; ask again once there is room (the number is computed again)."""


class TaskRevoked(FactorialWSError):
    """``Task revoked``: the task was revoked through Celery."""


class TaskCancelled(FactorialWSError):
    """``Task cancelled``: a client cancelled the task (``TaskHandle.cancel``, ``Client.cancel``),
    or cancelled its own wait for it."""


class TaskNotCancelled(FactorialWSError):
    """``Task not cancelled: …``: a cancel from a client that neither created the task nor waits
    for it (only the connection that created a computation may revoke it), or from its creator
    with nothing of its own to end while others wait for it (one client's cancel never stops
    another's wait)."""


# --- the connection ----------------------------------------------------------------------------


class ConnectionFailed(FactorialWSError):
    """The connection could not be opened: nothing listens, TLS failed, the peer is no WebSocket
    server, or it did not answer in time. ``message`` names the cause in one line."""


class HandshakeRefused(ConnectionFailed):
    """The gateway answered the handshake with an HTTP error: 401 (token), 403 (origin), 503
    (too many connections)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ConnectionLost(FactorialWSError):
    """The connection dropped and could not be opened again within ``reconnect_timeout_s`` (or
    the client does not reconnect). The task may still finish: look it up by ``task_id``."""


class ReplyTooLarge(FactorialWSError):
    """The gateway sent a frame larger than ``max_reply_bytes`` (by default, larger than any
    reply a gateway sends): every request awaited on that connection fails with this (the frame
    cannot be read, so which of them it answered is unknown), and the client reconnects."""


class RequestTooLarge(FactorialWSError):
    """The gateway closed the connection on this request's frame, larger than its
    ``WS_MAX_MESSAGE_BYTES`` (1009): the request fails alone rather than being sent again at each
    reconnection, and the client reconnects for the others."""


class ClientClosed(FactorialWSError):
    """The client was closed while this request was waiting, or before it was made."""


# Exact messages first; the "Invalid request: …" family by its prefix.
_BY_MESSAGE: dict[str, type[FactorialWSError]] = {
    JSON_DECODE_ERROR: JSONDecodeFailed,
    UNKNOWN_TASK: UnknownTask,
    TIMEOUT_ERROR: TaskTimeout,
    UNKNOWN_TASK_ID: UnknownTaskId,
    SERVICE_UNAVAILABLE: ServiceUnavailable,
    SERVER_BUSY: ServerBusy,
    HARD_QUEUE_FULL: HardQueueFull,
    STORAGE_NEARLY_FULL: StorageNearlyFull,
    CLIENT_BUSY: TooManyQueued,
    CLIENT_STORED_TOO_MUCH: StoredTooMuch,
    TOO_MANY_IN_FLIGHT: TooManyInFlight,
    RATE_LIMITED: RateLimited,
    TASK_FAILED: TaskFailed,
    WORKER_LOST: WorkerLost,
    STORAGE_FULL: StorageFull,
    TASK_REVOKED: TaskRevoked,
    TASK_CANCELLED: TaskCancelled,
    TASK_NOT_CANCELLED: TaskNotCancelled,
    TASK_NOT_YOURS: TaskNotCancelled,
}


def error_for(message: str, task_id: str | None = None) -> FactorialWSError:
    """The exception for an error reply's message; the root class for a message not known."""
    if message.startswith(INVALID_REQUEST):
        return InvalidRequest(message, task_id)
    if message not in _BY_MESSAGE and message.startswith(TASK_FAILED + ": "):
        return TaskFailed(message, task_id)  # a catalog task's failure: "Task failed: ValueError"
    return _BY_MESSAGE.get(message, FactorialWSError)(message, task_id)


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
