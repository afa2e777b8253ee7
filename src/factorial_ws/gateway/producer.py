"""Send factorial tasks to Celery's queues from asyncio, without blocking the event loop.

Celery's own ``apply_async`` is synchronous I/O. Instead, Celery builds the task message (its
protocol 2 headers and body) and this module wraps it in the envelope kombu's Redis transport
uses, then pushes it with ``redis.asyncio`` in the same atomic step that marks the id as known.
The envelope names the anonymous exchange, which kombu routes to the queue named by the routing
key; that is also where a redelivered (restored) message goes.

A request with progress also learns, in that same step, how many tasks are ahead of its task.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from typing import Any

import redis.asyncio as aioredis
from celery import Celery

from ..constants import KOMBU_UNACKED_KEY, PROGRESS_HEADER, SUBMITTED_KEY_PREFIX, TASK_NAME_BY_QUEUE

_ORIGIN = f"gateway@{socket.gethostname()}"
# How long a task waits for its replicas before the client is told "Service unavailable".
REPLICA_ACK_TIMEOUT_MS = 1000


def task_envelope(app: Celery, task_id: str, queue: str, number: int, *, progress: bool = False) -> bytes:
    """The bytes kombu's Redis transport would LPUSH for ``task.apply_async((number,))`` (with
    ``progress``, a header that asks the worker to store Celery's STARTED state)."""
    # The reprs are given: Celery's own saferepr of the arguments was a third of this
    # function's cost on the gateway's hot path.
    task = app.tasks[TASK_NAME_BY_QUEUE[queue]]
    message = app.amqp.as_task_v2(
        task_id,
        task.name,
        args=(number,),
        kwargs={},
        origin=_ORIGIN,
        argsrepr=f"({number},)",
        kwargsrepr="{}",
        # As apply_async does: the worker enforces the message's limits over its own settings.
        time_limit=task.time_limit,
        soft_time_limit=task.soft_time_limit,
    )
    body = json.dumps(message.body).encode()
    headers = {**message.headers, PROGRESS_HEADER: True} if progress else message.headers
    envelope: dict[str, Any] = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **message.properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope).encode()


def submitted_record(queue: str, number: int) -> bytes:
    return json.dumps({"queue": queue, "number": number}).encode()


# Marks the id as known and pushes its task, in one atomic step, and only if the id was not
# known yet. A call repeated because its reply was lost (the connection dropped after Redis ran
# it) finds the mark and pushes nothing, so the pool may retry it like a read.
#
# With progress (ARGV[4]), it returns the tasks ahead: the queue's length before the push, and
# the tasks of that queue that workers have taken and not finished. kombu keeps each message a
# worker has taken in the ``unacked`` hash (KEYS[3]) until it is acknowledged, which (acks_late)
# is once the task is done; the value is JSON ``[message, exchange, routing_key]``, so the queue
# (our routing key) ends it.
_SUBMIT_SCRIPT = """
local length = 0
if redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then
    length = redis.call('LPUSH', KEYS[2], ARGV[3])
end
if ARGV[4] ~= '1' then return -1 end
if length == 0 then length = redis.call('LLEN', KEYS[2]) end
local ahead = length - 1
local tail = '"' .. KEYS[2] .. '"]'
for _, message in ipairs(redis.call('HVALS', KEYS[3])) do
    if string.sub(message, -#tail) == tail then ahead = ahead + 1 end
end
return ahead
"""


class NotReplicated(aioredis.RedisError):
    """Fewer replicas than required confirmed the task in time: a failover could lose it."""


class Producer:
    """Publishes tasks and records that their ids exist (so a lookup can tell "queued" from
    "never heard of": Celery reports both as PENDING).

    With ``min_replicas_ack``, ``send`` returns only once that many replicas hold the task
    (Redis ``WAIT``), so a task whose client got its ack survives the loss of the master.
    """

    def __init__(
        self, app: Celery, client: aioredis.Redis, result_expires_s: int, *, min_replicas_ack: int = 0
    ) -> None:
        self._app = app
        self._client = client
        self._expires_s = result_expires_s
        self._submit = client.register_script(_SUBMIT_SCRIPT)
        self._min_replicas_ack = min_replicas_ack

    async def send(self, task_id: str, queue: str, number: int, *, progress: bool = False) -> int | None:
        """Raises redis.RedisError when Redis cannot take the task, or NotReplicated when too
        few replicas confirmed it (it may still run). Sending the same id again sends nothing:
        the task is pushed at most once, however often this is retried. With ``progress``,
        returns how many tasks were ahead of it: waiting in its queue, or taken by a worker
        (reserved or running) and not finished."""
        # The known-marker expires with the result it stands for: a result is stored after
        # its task was sent, so it always outlives the marker.
        keys = [SUBMITTED_KEY_PREFIX + task_id, queue, KOMBU_UNACKED_KEY]
        args: list[bytes | int] = [
            submitted_record(queue, number),
            self._expires_s,
            task_envelope(self._app, task_id, queue, number, progress=progress),
            int(progress),
        ]
        if not self._min_replicas_ack:
            ahead = await self._submit(keys=keys, args=args)
        else:
            # WAIT must follow the script on the same connection: one pipeline, one round trip.
            pipe = self._client.pipeline(transaction=False)
            await self._submit(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", self._min_replicas_ack, REPLICA_ACK_TIMEOUT_MS)
            ahead, replicas = await pipe.execute()
            if int(replicas) < self._min_replicas_ack:
                raise NotReplicated(f"{replicas} of {self._min_replicas_ack} replicas confirmed the task")
        return int(ahead) if progress else None
