"""The client library: ``Client`` (asyncio), its task handles and its exceptions.

    from factorial_ws import Client

    async with Client("ws://localhost:25000/") as client:
        print(await client.factorial(20))

``wire`` is the protocol without I/O, ``api`` the ``Client``'s requests, ``connection`` the
connection under them that survives gateway restarts (``reconnection`` opens it again after a
drop), ``handle`` a submitted task as its caller holds it, ``errors`` the exceptions, ``command``
the ``factorial-ws client`` command.
"""

from .api import Client
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
    ReplyTooLarge,
    RequestTooLarge,
    ServerBusy,
    ServiceUnavailable,
    StorageFull,
    StorageNearlyFull,
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
from .handle import TaskHandle

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
    "ReplyTooLarge",
    "RequestTooLarge",
    "ServerBusy",
    "ServiceUnavailable",
    "StorageFull",
    "StorageNearlyFull",
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
