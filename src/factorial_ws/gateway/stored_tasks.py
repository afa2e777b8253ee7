"""A task's stored state as the gateway reads it from Redis: Celery's meta under
``celery-task-meta-<id>``, the submission record (``submit.lua``), and the marker a cancel
leaves (``cancel.py``).

``look`` reads all three in one round trip, batched with the other lookups of the same turn: a
finished, started, pending or unknown task, and which kind it is (a catalog task's name in its
record, None for factorial). The meta itself is parsed without I/O by ``worker.stored_meta``,
beside the backend that writes it; this module only fetches it.

Celery stores REVOKED for any revoked task; one that a client cancelled is named ``Task
cancelled`` instead, by one explicit step (``revoked_as_cancelled``, the pure rule being
``stored_meta.cancelled_if_marked``).
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from ..catalog import DEFAULT_MAX_RESULT_BYTES, Catalog
from ..constants import (
    CANCELLED_KEY_PREFIX,
    RESULT_KEY_PREFIX,
    RESULT_TOO_LARGE,
    SUBMITTED_KEY_PREFIX,
    TASK_REVOKED,
)
from ..protocol import Failure, Pending, Progress, Started
from ..worker.result_backend import NOTE_INLINE_MAX_BYTES, stored_note, stored_size
from ..worker.stored_meta import (
    Ending,
    Stored,
    cancelled_if_marked,
    catalog_state,
    read_note,
    without_progress,
)
from .batching import Batcher


class ServiceUnavailable(Exception):
    """Redis cannot be reached right now."""


class Unknown:
    """A task id the system has never sent, or whose result has expired."""


Snapshot = Ending | Pending | Started | Unknown
NoteState = Ending | Pending | Started | Progress  # what a note says, progress included


def result_key(task_id: str) -> str:
    return RESULT_KEY_PREFIX + task_id


def catalog_task_of(record: bytes | str | None) -> str | None:
    """The catalog task a submitted record names (None: factorial, or no record)."""
    if not record or (b'"task"' not in record if isinstance(record, bytes) else '"task"' not in record):
        return None  # factorial's record, at no parsing cost
    try:
        task = json.loads(record).get("task")
    except (ValueError, AttributeError):
        return None
    return task if isinstance(task, str) else None


class StoredTasks:
    """Reads of tasks' stored states, through the pooled client."""

    def __init__(self, client: aioredis.Redis, *, catalog: Catalog, task_error_messages: bool) -> None:
        self._client = client
        self._catalog = catalog  # the limits of catalog tasks
        self._error_messages = task_error_messages  # TASK_ERROR_MESSAGES, for catalog tasks
        self._snapshots: Batcher[str, tuple[int, bytes, bytes | None, int]] = Batcher(self._read_snapshots)

    async def close(self) -> None:
        await self._snapshots.close()

    async def snapshot(self, task_id: str) -> Snapshot:
        """The task's state now, from one round trip: finished, started, pending, or unknown."""
        return (await self.look(task_id))[0]

    async def look(self, task_id: str) -> tuple[Snapshot, str | None]:
        """``snapshot``, and the catalog task it is (None: factorial), from its record. A
        catalog task's large result is ``Stored``: read it with ``read_catalog_result``."""
        try:
            size, head, record, cancelled = await self._snapshots.call(task_id)
        except (aioredis.RedisError, OSError):
            raise ServiceUnavailable from None
        catalog_task = catalog_task_of(record)
        note = _note(size, head)
        if note is not None:
            state = self.note_state(note, catalog_task)
            return cancelled_if_marked(without_progress(state), bool(cancelled)), catalog_task
        return (Pending() if record is not None else Unknown()), catalog_task

    async def read_catalog_result(self, task_id: str, catalog_task: str) -> Ending | None:
        """A catalog task's stored outcome, read whole unless it is too large (None: nothing
        stored, or not an end)."""
        key = result_key(task_id)
        max_result_bytes = self._max_result_bytes(catalog_task)
        try:
            size = await self._client.strlen(key)
            if size > max_result_bytes:
                return Failure(RESULT_TOO_LARGE, size)
            meta = await self._client.get(key) if size else None
        except (aioredis.RedisError, OSError):
            raise ServiceUnavailable from None
        if meta is None:
            return None
        state = catalog_state(meta, max_result_bytes=max_result_bytes, error_messages=self._error_messages)
        return None if isinstance(state, Pending | Started | Progress) else state

    async def revoked_as_cancelled(self, task_id: str, outcome: Ending) -> Ending:
        """The outcome a watch received, with a revoked task that a client cancelled (a marker
        the canceller left) named ``Task cancelled`` rather than ``Task revoked``. Only revoked
        tasks cost this extra read."""
        if outcome != Failure(TASK_REVOKED):
            return outcome
        try:
            marked = await self._client.exists(CANCELLED_KEY_PREFIX + task_id)
        except aioredis.RedisError:
            return outcome
        return cancelled_if_marked(outcome, bool(marked))

    def note_state(self, note: bytes | str, catalog_task: str | None) -> NoteState:
        """What a note (published, or read by ``read_notes``) says about a task of that kind."""
        if catalog_task is None:
            return read_note(note)
        size = stored_size(note)
        if size is not None:
            return Stored(size, catalog_task)
        return catalog_state(
            note, max_result_bytes=self._max_result_bytes(catalog_task), error_messages=self._error_messages
        )

    def _max_result_bytes(self, catalog_task: str) -> int:
        entry = self._catalog.get(catalog_task)
        return DEFAULT_MAX_RESULT_BYTES if entry is None else entry.max_result_bytes

    async def _read_snapshots(
        self, task_ids: list[str]
    ) -> list[tuple[int, bytes, bytes | None, int] | BaseException]:
        """``look``'s four reads for every task of a batch, in one pipeline."""
        pipe = self._client.pipeline(transaction=False)
        for task_id in task_ids:
            _read_note(pipe, task_id)
            pipe.get(SUBMITTED_KEY_PREFIX + task_id)  # the record: which kind of task
            pipe.exists(CANCELLED_KEY_PREFIX + task_id)
        replies = await pipe.execute(raise_on_error=False)
        answers: list[tuple[int, bytes, bytes | None, int] | BaseException] = []
        for start in range(0, len(replies), 4):
            four = replies[start : start + 4]
            failed = next((reply for reply in four if isinstance(reply, BaseException)), None)
            answers.append(failed or tuple(four))
        return answers


async def read_notes(client: aioredis.Redis, task_ids: list[str]) -> list[bytes | None]:
    """For each task, the note the workers would publish for its stored meta (the meta when
    small, else its size: a large result is not read here), or None when nothing is stored."""
    pipe = client.pipeline(transaction=False)
    for task_id in task_ids:
        _read_note(pipe, task_id)
    replies = await pipe.execute()
    return [_note(size, head) for size, head in zip(replies[::2], replies[1::2], strict=True)]


def _read_note(pipe: aioredis.client.Pipeline, task_id: str) -> None:
    """Queue the two reads ``_note`` makes a note of: the meta's size and its head."""
    pipe.strlen(result_key(task_id))
    pipe.getrange(result_key(task_id), 0, NOTE_INLINE_MAX_BYTES - 1)


def _note(size: int, head: bytes) -> bytes | None:
    if not size:
        return None
    return head if size <= NOTE_INLINE_MAX_BYTES else stored_note(size)
