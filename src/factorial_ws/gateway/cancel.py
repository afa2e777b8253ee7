"""Revoking a task for a client's cancel: record it in Redis, broadcast Celery's revoke, and hear
from the live workers.

A queued task must never run and a running one must stop. Celery's ``revoke`` with ``terminate``
does both for the workers that hear it: each keeps the id and discards the task when it comes,
the one running it kills its pool process (SIGKILL: GMP computes in C, where SIGTERM's Python
handler would wait for the end of the computation), and each marks the task REVOKED in the result
backend unless a result is there. But a worker keeps revoked ids in memory only, and one that is
not listening (starting, restarting, reconnecting) never hears the broadcast: so the cancel is
first recorded in Redis (``CANCELLED_KEY``, read by every worker when it starts and every
``CANCELLED_RELOAD_S``, see ``worker_hooks.CancelledTasks``), then broadcast. The broadcast asks
for replies, and the gateway waits, up to ``REVOKE_REPLY_TIMEOUT_S``, for one from each worker
whose heartbeat is fresh: once they all answered, a worker that held the task has killed or
dropped it.

Celery's control API is synchronous I/O (kombu), so the broadcast runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

import redis.asyncio as aioredis
from celery import Celery

from ..constants import (
    CANCELLED_KEY,
    CANCELLED_KEY_PREFIX,
    QUEUES,
    WORKER_STALE_S,
    WORKERS_KEY_PREFIX,
)

logger = logging.getLogger(__name__)

REVOKE_REPLY_TIMEOUT_S: Final = 2.0
# How the worker running a cancelled task stops it.
TERMINATE_SIGNAL: Final = "SIGKILL"


class Canceller:
    def __init__(self, app: Celery, client: aioredis.Redis, keep_s: int) -> None:
        self._app = app
        self._client = client
        self._keep_s = keep_s  # how long a cancel is remembered: as long as its task's id

    async def warm_up(self) -> None:
        """Open the broker connection the broadcasts use now, not at the first cancel (about
        0.2 s); a Redis that is not there yet is left to that first cancel."""
        try:
            await asyncio.to_thread(self._connect)
        except Exception:
            logger.debug("could not open the broker connection for cancels yet", exc_info=True)

    def _connect(self) -> None:
        pool: Any = self._app.pool  # kombu's pool of broker connections, which broadcasts take
        with pool.acquire(block=True) as connection:
            connection.ensure_connection(max_retries=1)

    async def record(self, task_id: str) -> None:
        """Remember the cancel: the marker that names the task's end ``Task cancelled``, and the
        entry workers load. Raises redis.RedisError when Redis cannot take it."""
        now = time.time()
        pipe = self._client.pipeline(transaction=True)
        pipe.set(CANCELLED_KEY_PREFIX + task_id, b"1", ex=self._keep_s)
        pipe.zadd(CANCELLED_KEY, {task_id: now})
        pipe.zremrangebyscore(CANCELLED_KEY, "-inf", now - self._keep_s)
        await pipe.execute()

    async def revoke(self, task_id: str) -> set[str]:
        """Broadcast the revoke; the live workers that did not answer in time (logged)."""
        expected = await self._live_workers()
        unanswered = await asyncio.to_thread(self._broadcast, task_id, expected)
        if unanswered:
            logger.warning(
                "revoke of %s: no answer within %.0f s from %s",
                task_id,
                REVOKE_REPLY_TIMEOUT_S,
                sorted(unanswered),
            )
        return unanswered

    async def mark_revoked(self, task_id: str) -> None:
        """Store the REVOKED state ourselves (no live worker did), so that lookups and every
        waiter hear at once that the task will not end otherwise. Celery's store keeps a
        result that is there already."""
        await asyncio.to_thread(self._app.backend.mark_as_revoked, task_id, "cancelled")

    async def _live_workers(self) -> set[str]:
        since = time.time() - WORKER_STALE_S
        pipe = self._client.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.zrangebyscore(WORKERS_KEY_PREFIX + queue, since, "+inf")
        replies = await pipe.execute()
        return {_text(hostname) for hostnames in replies for hostname in hostnames}

    def _broadcast(self, task_id: str, expected: set[str]) -> set[str]:
        arguments = {"task_id": task_id, "terminate": True, "signal": TERMINATE_SIGNAL}
        replies: list[dict[str, Any]] | None = self._app.control.broadcast(
            "revoke",
            arguments=arguments,
            reply=bool(expected),
            limit=len(expected) or None,
            timeout=REVOKE_REPLY_TIMEOUT_S,
        )
        answered = {hostname for reply in replies or [] for hostname in reply}
        return expected - answered


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
