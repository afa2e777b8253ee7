"""The client library: ``Client`` (asyncio), its task handles and its exceptions.

    from factorial_ws import Client

    async with Client("ws://localhost:25000/") as client:
        print(await client.factorial(20))

``wire`` is the protocol without I/O, ``connection`` the connection that survives gateway
restarts, ``errors`` the exceptions, ``command`` the ``factorial-ws client`` command.
"""

from .connection import Client, TaskHandle
from .errors import (
    ClientClosed,
    ConnectionFailed,
    ConnectionLost,
    FactorialWSError,
    HandshakeRefused,
    HardQueueFull,
    InvalidRequest,
    JSONDecodeFailed,
    RateLimited,
    ServerBusy,
    ServiceUnavailable,
    StoredTooMuch,
    TaskCancelled,
    TaskFailed,
    TaskNotCancelled,
    TaskRevoked,
    TaskTimeout,
    TooManyInFlight,
    TooManyQueued,
    UnknownTask,
    UnknownTaskId,
    WorkerLost,
)

__all__ = [
    "Client",
    "ClientClosed",
    "ConnectionFailed",
    "ConnectionLost",
    "FactorialWSError",
    "HandshakeRefused",
    "HardQueueFull",
    "InvalidRequest",
    "JSONDecodeFailed",
    "RateLimited",
    "ServerBusy",
    "ServiceUnavailable",
    "StoredTooMuch",
    "TaskCancelled",
    "TaskFailed",
    "TaskHandle",
    "TaskNotCancelled",
    "TaskRevoked",
    "TaskTimeout",
    "TooManyInFlight",
    "TooManyQueued",
    "UnknownTask",
    "UnknownTaskId",
    "WorkerLost",
]
