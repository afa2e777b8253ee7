"""The workers' result backend: Celery's Redis backend, plus a short note per stored result on a
channel of ours.

Celery stores a result under ``celery-task-meta-<id>`` and PUBLISHes the same bytes on a channel
of that name. A factorial of a million is 5.5 MB of digits, and Redis queues everything it
publishes in the subscriber's output buffer, which it caps (``client-output-buffer-limit pubsub``,
32 MB by default): a gateway waiting for eight such results at once would be disconnected. So
the gateways listen on ``factorial-ws:done:<id>`` instead, where this backend publishes the meta
itself when it is small, and only its size when it is large; a gateway then reads a large result
with one GET per process. Celery's own channel still gets the full meta, so a Celery client
(``AsyncResult.get()``) works as before.

It also charges each stored meta's bytes to the client address its task was sent for (the task
message's ``CLIENT_HEADER``), in the same transaction: a hash per address of time buckets
(``stored_bucket_s`` wide) that the gateways' submission script sums over the results'
retention, to refuse an address that made Redis store too much (STORED_BYTES_PER_CLIENT).
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextvars import ContextVar
from typing import Any, Final

import redis
from celery import states
from celery.app.backends import by_url
from celery.backends.redis import RedisBackend, SentinelBackend

from ..constants import (
    CANCELLED_KEY_PREFIX,
    CLIENT_HEADER,
    NOTE_CHANNEL_PREFIX,
    RESULT_KEY_PREFIX,
    STORED_BYTES_KEY_PREFIX,
    SUBMITTED_KEY_PREFIX,
)

logger = logging.getLogger(__name__)

# Metas up to this size travel whole in the note (so small results need no second read); a
# larger one is announced by size. Far below Redis' 32 MB output-buffer limit even when hundreds
# of notes are in flight at once.
NOTE_INLINE_MAX_BYTES: Final = 64 * 1024
_STORED_NOTE_PREFIX: Final = b'{"stored_bytes": '


# The client address the meta being stored is charged to ("": nobody), set around Celery's
# _store_result, which knows the task's request, for _set, which does not.
_charged_to: ContextVar[str] = ContextVar("charged_to", default="")


def stored_bucket_s(result_expires_s: int) -> int:
    """The width of a stored-bytes bucket: a sixtieth of the retention (a minute of an hour), so
    a stored result counts at most that much longer than it is kept."""
    return max(1, math.ceil(result_expires_s / 60))


def note_channel(task_id: str) -> str:
    """The channel that announces the end of a task to the gateways."""
    return NOTE_CHANNEL_PREFIX + task_id


def stored_note(size: int) -> bytes:
    """A note saying that a result of ``size`` bytes is stored: read it with GET."""
    return _STORED_NOTE_PREFIX + str(size).encode() + b"}"


def note_for(meta: bytes | str) -> bytes | str:
    """What a gateway receives for a stored meta: the meta when small, else its size."""
    return meta if len(meta) <= NOTE_INLINE_MAX_BYTES else stored_note(len(meta))


def stored_size(note: bytes | str) -> int | None:
    """The size announced by a ``stored_note``; None for a note that carries the meta itself."""
    raw = note.encode() if isinstance(note, str) else note
    if not raw.startswith(_STORED_NOTE_PREFIX):
        return None
    size = json.loads(raw)["stored_bytes"]
    return size if isinstance(size, int) else None


class StorageFull(Exception):
    """Redis was full (over ``maxmemory``, noeviction) when the task's result came to be stored."""


def storage_full_meta(task_id: str) -> bytes:
    """The FAILURE meta announced, not stored, for a result Redis had no room for."""
    result = {"exc_type": StorageFull.__name__, "exc_module": __name__, "exc_message": ["Redis is full"]}
    return json.dumps({"status": "FAILURE", "result": result, "task_id": task_id}).encode()


def _status(meta: bytes | str) -> str | None:
    try:
        status = json.loads(meta).get("status")
    except (ValueError, AttributeError):
        return None
    return status if isinstance(status, str) else None


class NotingBackendMixin:
    """Celery's ``_set`` of a Redis backend (SET with expiry, PUBLISH on the key's channel), in
    the same transaction a note on our channel for each task result. The REVOKED state of a
    task a client cancelled lives as long as the cancel's mark (``gateway.cancel``), not the
    hour a result is kept: a submit-and-cancel loop must not fill Redis."""

    client: Any
    expires: int | None

    def __init__(self, *args: Any, url: str | None = None, **kwargs: Any) -> None:
        # Celery passes no URL when the backend is given as a class: the configured one, as
        # Celery would pass it (redis+socket://... becomes socket://...).
        celery_url: str = by_url(kwargs["app"].conf.result_backend)[1]  # type: ignore[index]
        kwargs["url"] = url or celery_url
        super().__init__(*args, **kwargs)

    def _store_result(
        self, task_id: str, result: Any, state: str, traceback: Any = None, request: Any = None, **kwargs: Any
    ) -> Any:
        charged = _charged_to.set(_client_of(request))
        try:
            return super()._store_result(task_id, result, state, traceback, request, **kwargs)  # type: ignore[misc]
        finally:
            _charged_to.reset(charged)

    def _set_with_state(self, key: bytes | str, value: bytes | str, state: str) -> Any:
        if state == states.REVOKED:
            expires_s = self._cancel_remembered_s(key)
            if expires_s:
                return self.set(key, value, expires=expires_s)  # type: ignore[attr-defined]
        return super()._set_with_state(key, value, state)  # type: ignore[misc]

    def _cancel_remembered_s(self, key: bytes | str) -> int | None:
        """How long the cancel of the task stored under ``key`` is remembered; None when it
        was not cancelled by a client (or Redis cannot say: the default expiry then)."""
        name = key.decode() if isinstance(key, bytes) else key
        task_id = name.removeprefix(RESULT_KEY_PREFIX)
        try:
            ttl_s = int(self.client.ttl(CANCELLED_KEY_PREFIX + task_id))
        except redis.RedisError:
            return None
        return ttl_s if ttl_s > 0 else None

    def _set(self, key: bytes | str, value: bytes | str, expires: int | None = None) -> None:
        try:
            self._store_and_announce(key, value, expires)
        except redis.OutOfMemoryError:
            name = key.decode() if isinstance(key, bytes) else key
            if not name.startswith(RESULT_KEY_PREFIX):
                raise  # not a task's state (Celery's group results): nobody of ours waits on it
            self._announce_unstored(name.removeprefix(RESULT_KEY_PREFIX), value)

    def _announce_unstored(self, task_id: str, value: bytes | str) -> None:
        """Redis is full: a STARTED state is only a progress report, and is dropped; an outcome
        is announced as ``StorageFull`` to whoever waits (PUBLISH and DEL are allowed in a full
        Redis, outside a transaction), and the task's submission record is deleted so that the
        next request for its number starts a new task rather than join one that will never
        answer. Raising instead would fail the task in the worker's main process, which also
        could not store that, and stop nobody waiting from waiting."""
        if _status(value) == "STARTED":
            logger.warning("Redis is full: the start of task %s is not reported", task_id)
            return
        logger.error("Redis is full: the result of task %s is not stored; its clients are told so", task_id)
        failure = storage_full_meta(task_id)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.publish(RESULT_KEY_PREFIX + task_id, failure)
            pipe.publish(note_channel(task_id), failure)
            pipe.delete(SUBMITTED_KEY_PREFIX + task_id)
            pipe.execute()

    def _store_and_announce(self, key: bytes | str, value: bytes | str, expires: int | None) -> None:
        if expires is None:
            expires = self.expires
        with self.client.pipeline() as pipe:
            if expires:
                pipe.setex(key, expires, value)
            else:
                pipe.set(key, value)
            pipe.publish(key, value)
            name = key.decode() if isinstance(key, bytes) else key
            if name.startswith(RESULT_KEY_PREFIX):
                pipe.publish(note_channel(name.removeprefix(RESULT_KEY_PREFIX)), note_for(value))
                self._charge(pipe, len(key) + len(value))
            pipe.execute()

    def _charge(self, pipe: Any, size: int) -> None:
        """Add ``size`` to the stored bytes of the address the meta is charged to, in the bucket
        of now (this machine's clock: a bucket is a minute wide, far beyond clock differences)."""
        address = _charged_to.get()
        if address and self.expires:
            charge_stored_bytes(pipe, address, size, self.expires)


def charge_stored_bytes(pipe: Any, address: str, size: int, result_expires_s: int) -> None:
    """Queue on ``pipe`` (sync or asyncio) the charge of ``size`` stored bytes to ``address``, in
    the bucket of now. The workers' backend charges what it stores; the gateway charges a catalog
    task's result, which a stock worker stored without knowing of the ledger."""
    bucket_s = stored_bucket_s(result_expires_s)
    key = STORED_BYTES_KEY_PREFIX + address
    pipe.hincrby(key, str(int(time.time() // bucket_s)), size)
    pipe.expire(key, result_expires_s + bucket_s)


def _client_of(request: Any) -> str:
    """The client address a task's request names (a Celery Context, or a dict); "" if none."""
    value = request.get(CLIENT_HEADER) if isinstance(request, dict) else getattr(request, CLIENT_HEADER, None)
    return value if isinstance(value, str) else ""


class NotingRedisBackend(NotingBackendMixin, RedisBackend):
    pass


class NotingSentinelBackend(NotingBackendMixin, SentinelBackend):
    pass


def backend_class(result_backend: str) -> str:
    """The noting backend for Celery's ``result_backend`` URL (``app.backend_cls``)."""
    noting = NotingSentinelBackend if result_backend.startswith("sentinel") else NotingRedisBackend
    return f"{__name__}:{noting.__name__}"
