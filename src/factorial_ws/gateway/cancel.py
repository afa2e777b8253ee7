"""A client's cancel: who may take a computation back (``cancel_action``, a pure rule), and
revoking it (``Canceller``): record it in Redis, broadcast Celery's revoke, hear from the live
workers.

Who may cancel. Result reuse hands one task id to every request for the same number, and a
task id is no secret from those requests; so the id alone grants no power over the computation.
Only the connection that created a task (its ``factorial`` request made it) may revoke it, and
only while nobody else waits for it. Anyone else who waits for it (a joiner of the same number,
a lookup) may end its own waits: the computation goes on. A connection that neither created
nor waits for the task is refused. Once its creator has gone, nobody may revoke a computation:
its result stays for a later lookup.

Revoking. A queued task must never run and a running one must stop. Celery's ``revoke`` with
``terminate`` does both for the workers that hear it: each keeps the id and discards the task
when it comes, the one running it kills its pool process (SIGKILL: GMP computes in C, where
SIGTERM's Python handler would wait for the end of the computation), and each marks the task
REVOKED in the result backend unless a result is there. But a worker keeps revoked ids in memory
only, and one that is not listening (starting, restarting, reconnecting) never hears the
broadcast: so the cancel is first recorded in Redis (``CANCELLED_KEY``, read by every worker
when it starts and every ``CANCELLED_RELOAD_S``, see ``worker.hooks.CancelledTasks``), then
broadcast. The broadcast asks for replies, and waits, up to ``REVOKE_REPLY_TIMEOUT_S``, for one
from each worker whose heartbeat is fresh: once they all answered, a worker that held the task
has killed or dropped it.

What a cancel costs, whatever clients send: one broadcast per task (a repeated or concurrent
cancel of a task shares the revoke in flight, and one recorded before needs none: the Redis
mark says so), and the tasks cancelled while a broadcast is out go together in the next one
(Celery's revoke takes a list of ids). Celery's control API is synchronous I/O (kombu), so
broadcasts run on the canceller's own threads, one at a time: a frozen worker that lets every
broadcast wait its full timeout delays cancels only, never the threads or the admission slots
other requests need. What a cancel leaves in Redis lives ``keep_s`` (TASK_EXPIRES: afterwards no
worker may start the task anyway), not the hour a result is kept.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import redis.asyncio as aioredis
from celery import Celery
from redis.exceptions import NoScriptError
from redis.utils import str_if_bytes

from ..constants import (
    CANCELLED_KEY,
    CANCELLED_KEY_PREFIX,
    NUMBER_KEY_PREFIX,
    QUEUES,
    SUBMITTED_KEY_PREFIX,
    TASK_NOT_CANCELLED,
    TASK_NOT_YOURS,
    WORKER_STALE_S,
    WORKERS_KEY_PREFIX,
)

logger = logging.getLogger(__name__)

REVOKE_REPLY_TIMEOUT_S: Final = 2.0
# How the worker running a cancelled task stops it.
TERMINATE_SIGNAL: Final = "SIGKILL"
# One thread broadcasts (one broadcast at a time), the other stores REVOKED states meanwhile.
_THREADS: Final = 2


class CancelAction(enum.Enum):
    """What a cancel of a task still queued or running does (``cancel_action``)."""

    REVOKE = "revoke"  # stop the computation; this connection's waits for it end too
    END_OWN_WAITS = "end own waits"  # this connection stops waiting; the computation goes on
    OTHERS_WAIT = "refused: others wait"  # its creator, with nothing of its own to end
    NOT_YOURS = "refused: not yours"  # neither its creator nor waiting for it

    @property
    def refusal(self) -> str | None:
        """The error a refused cancel gets; None when the cancel is carried out."""
        return _REFUSALS.get(self)


_REFUSALS: Final = {CancelAction.OTHERS_WAIT: TASK_NOT_CANCELLED, CancelAction.NOT_YOURS: TASK_NOT_YOURS}


def cancel_action(*, created: bool, waits_here: bool, others_wait: bool) -> CancelAction:
    """The rule for a cancel of a task that has not ended, from the connection's point of view:
    whether it ``created`` the task, whether requests of its own wait for it, and whether
    anyone else does (only asked of a creator)."""
    if created and not others_wait:
        return CancelAction.REVOKE
    if waits_here:
        return CancelAction.END_OWN_WAITS
    return CancelAction.OTHERS_WAIT if created else CancelAction.NOT_YOURS


# Record a cancel, atomically: the mark that names the task's end "Task cancelled" (SET NX: the
# reply says whether this cancel was the first), the entry workers load, and what the task left
# behind shortened to the mark's life: its record (the id stays known exactly as long as its
# cancel), and the reuse pointer of its number, which can only lead to a new computation now.
_RECORD_SCRIPT: Final = """
local mark, cancelled, record = KEYS[1], KEYS[2], KEYS[3]
local task_id, keep_s, now, number_prefix = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local first = redis.call('SET', mark, '1', 'NX', 'EX', keep_s)
redis.call('ZADD', cancelled, now, task_id)
redis.call('ZREMRANGEBYSCORE', cancelled, '-inf', now - keep_s)
redis.call('EXPIRE', cancelled, keep_s)
local ttl_s = redis.call('TTL', record)
if ttl_s > keep_s then redis.call('EXPIRE', record, keep_s) end
local ok, sent = pcall(cjson.decode, redis.call('GET', record) or '')
if ok and type(sent) == 'table' and sent.number then
  local number_key = number_prefix .. string.format('%d', sent.number)
  if redis.call('GET', number_key) == task_id then redis.call('DEL', number_key) end
end
return first and 1 or 0
"""


class Canceller:
    def __init__(self, app: Celery, client: aioredis.Redis, keep_s: float) -> None:
        self._app = app
        self._client = client
        # How long a cancel is remembered: until no worker may start its task anyway.
        self._keep_s = max(1, math.ceil(keep_s))
        self._script_sha = hashlib.sha1(_RECORD_SCRIPT.encode()).hexdigest()
        self._threads = ThreadPoolExecutor(_THREADS, thread_name_prefix="revoke")
        self._revoking: dict[str, asyncio.Future[None]] = {}  # by task id: its revoke, until answered
        self._next_batch: list[str] = []  # ids for the next broadcast
        self._sender: asyncio.Task[None] | None = None

    async def warm_up(self) -> None:
        """Open the broker connection the broadcasts use now, not at the first cancel (about
        0.2 s); a Redis that is not there yet is left to that first cancel."""
        try:
            await self._in_thread(self._connect)
        except Exception:
            logger.debug("could not open the broker connection for cancels yet", exc_info=True)

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _connect(self) -> None:
        pool: Any = self._app.pool  # kombu's pool of broker connections, which broadcasts take
        with pool.acquire(block=True) as connection:
            connection.ensure_connection(max_retries=1)

    async def record(self, task_id: str) -> bool:
        """Remember the cancel (see ``_RECORD_SCRIPT``): True if it is the task's first.
        Raises redis.RedisError when Redis cannot take it."""
        keys = (CANCELLED_KEY_PREFIX + task_id, CANCELLED_KEY, SUBMITTED_KEY_PREFIX + task_id)
        args = (task_id, self._keep_s, time.time(), NUMBER_KEY_PREFIX)
        try:
            first = await self._client.evalsha(self._script_sha, len(keys), *keys, *args)
        except NoScriptError:
            first = await self._client.eval(_RECORD_SCRIPT, len(keys), *keys, *args)
        return bool(first)

    async def revoke(self, task_id: str, *, first: bool) -> None:
        """Broadcast the revoke of a task whose cancel was just recorded ``first``, and wait for
        the live workers' answers; a cancel of a task whose revoke is out waits for that one,
        and one recorded before needs none. Unanswered workers are logged."""
        revoking = self._revoking.get(task_id)
        if revoking is None:
            if not first:
                return
            revoking = self._revoking[task_id] = asyncio.get_running_loop().create_future()
            self._next_batch.append(task_id)
            if self._sender is None or self._sender.done():
                self._sender = asyncio.create_task(self._send_batches(), name="revokes")
        await asyncio.shield(revoking)

    async def mark_revoked(self, task_id: str) -> None:
        """Store the REVOKED state ourselves (no live worker did), so that lookups and every
        waiter hear at once that the task will not end otherwise. Celery's store keeps a
        result that is there already."""
        await self._in_thread(self._app.backend.mark_as_revoked, task_id, "cancelled")

    async def _send_batches(self) -> None:
        """Broadcast the ids gathered meanwhile, one broadcast at a time, until none are left."""
        while self._next_batch:
            batch, self._next_batch = self._next_batch, []
            try:
                expected = await self._live_workers()
                unanswered = await self._in_thread(self._broadcast, batch, expected)
            except Exception as exc:
                self._answer(batch, exc)
                continue
            if unanswered:
                logger.warning(
                    "revoke of %s: no answer within %.0f s from %s",
                    ", ".join(batch),
                    REVOKE_REPLY_TIMEOUT_S,
                    sorted(unanswered),
                )
            self._answer(batch, None)

    def _answer(self, batch: list[str], error: Exception | None) -> None:
        for task_id in batch:
            revoking = self._revoking.pop(task_id)
            if revoking.done():
                continue
            if error is None:
                revoking.set_result(None)
            else:
                revoking.set_exception(error)
                revoking.exception()  # retrieved: a cancel that gave up waiting must not log it

    async def _in_thread(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._threads, function, *args)

    async def _live_workers(self) -> set[str]:
        since = time.time() - WORKER_STALE_S
        pipe = self._client.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.zrangebyscore(WORKERS_KEY_PREFIX + queue, since, "+inf")
        replies = await pipe.execute()
        return {str_if_bytes(hostname) for hostnames in replies for hostname in hostnames}

    def _broadcast(self, task_ids: list[str], expected: set[str]) -> set[str]:
        arguments = {"task_id": task_ids, "terminate": True, "signal": TERMINATE_SIGNAL}
        replies: list[dict[str, Any]] | None = self._app.control.broadcast(
            "revoke",
            arguments=arguments,
            reply=bool(expected),
            limit=len(expected) or None,
            timeout=REVOKE_REPLY_TIMEOUT_S,
        )
        answered = {hostname for reply in replies or [] for hostname in reply}
        return expected - answered
