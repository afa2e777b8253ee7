"""Send factorial tasks to Celery's queues from asyncio, without blocking the event loop.

Celery's own ``apply_async`` is synchronous I/O. Instead, Celery builds the task message (its
protocol 2 headers and body) and this module wraps it in the envelope kombu's Redis transport
uses, then pushes it with ``redis.asyncio`` in the same round trip that marks the id as known.
The envelope names the anonymous exchange, which kombu routes to the queue named by the routing
key; that is also where a redelivered (restored) message goes.

A request with progress also learns, in that same round trip, how many tasks are ahead of its
task (``COUNT_TAKEN``).
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from typing import Any, Final

import redis.asyncio as aioredis
from celery import Celery

from ..constants import KOMBU_UNACKED_KEY, PROGRESS_HEADER, SUBMITTED_KEY_PREFIX, TASK_NAME_BY_QUEUE

_ORIGIN = f"gateway@{socket.gethostname()}"

# Tasks of one queue that workers have taken and not finished: kombu keeps each message a worker
# has taken in the ``unacked`` hash until it is acknowledged, which (acks_late) is once the task
# is done; the value is JSON ``[message, exchange, routing_key]``, so the queue (our routing key)
# ends it. Sent as EVAL: a script in a pipeline would cost a SCRIPT EXISTS round trip each time.
COUNT_TAKEN: Final = """
local tail = '"' .. ARGV[1] .. '"]'
local taken = 0
for _, message in ipairs(redis.call('HVALS', KEYS[1])) do
  if string.sub(message, -#tail) == tail then taken = taken + 1 end
end
return taken
"""


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


class Producer:
    """Publishes tasks and records that their ids exist (so a lookup can tell "queued" from
    "never heard of": Celery reports both as PENDING)."""

    def __init__(self, app: Celery, client: aioredis.Redis, result_expires_s: int) -> None:
        self._app = app
        self._client = client
        self._expires_s = result_expires_s

    async def send(self, task_id: str, queue: str, number: int, *, progress: bool = False) -> int | None:
        """Raises redis.RedisError when Redis cannot take the task; nothing is sent then. With
        ``progress``, returns how many tasks were ahead of it: waiting in its queue, or taken by
        a worker (reserved or running) and not finished."""
        # The known-marker expires with the result it stands for: a result is stored after
        # its task was sent, so it always outlives the marker.
        pipe = self._client.pipeline(transaction=True)
        pipe.set(
            SUBMITTED_KEY_PREFIX + task_id,
            submitted_record(queue, number),
            ex=self._expires_s,
            nx=True,
        )
        pipe.lpush(queue, task_envelope(self._app, task_id, queue, number, progress=progress))
        if progress:
            # In the same transaction: nothing moves between the push and the count.
            pipe.eval(COUNT_TAKEN, 1, KOMBU_UNACKED_KEY, queue)
        replies = await pipe.execute()
        if not progress:
            return None
        _, length, taken = replies
        return int(length) - 1 + int(taken)
