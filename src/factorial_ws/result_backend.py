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
"""

from __future__ import annotations

import json
from typing import Any, Final

import redis
from celery import states
from celery.app.backends import by_url
from celery.backends.redis import RedisBackend, SentinelBackend

from .constants import CANCELLED_KEY_PREFIX, NOTE_CHANNEL_PREFIX, RESULT_KEY_PREFIX

# Metas up to this size travel whole in the note (so small results need no second read); a
# larger one is announced by size. Far below Redis' 32 MB output-buffer limit even when hundreds
# of notes are in flight at once.
NOTE_INLINE_MAX_BYTES: Final = 64 * 1024
_STORED_NOTE_PREFIX: Final = b'{"stored_bytes": '


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
            pipe.execute()


class NotingRedisBackend(NotingBackendMixin, RedisBackend):
    pass


class NotingSentinelBackend(NotingBackendMixin, SentinelBackend):
    pass


def backend_class(result_backend: str) -> str:
    """The noting backend for Celery's ``result_backend`` URL (``app.backend_cls``)."""
    noting = NotingSentinelBackend if result_backend.startswith("sentinel") else NotingRedisBackend
    return f"{__name__}:{noting.__name__}"
