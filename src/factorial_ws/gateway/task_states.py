"""Celery's stored meta of a catalog task, read into what its clients hear; without I/O.

A catalog task runs on the user's own (stock) Celery workers, whose Redis backend stores each
state change under ``celery-task-meta-<id>`` and PUBLISHes the same JSON on a channel of that
name: STARTED (with ``task_track_started``), the task's own states (``update_state``, such as
celery-progress's PROGRESS), then SUCCESS or FAILURE. Unlike factorial's digits, a result is any
JSON value, passed on as it was stored; a failure names only the exception's type unless the
operator asked for messages (TASK_ERROR_MESSAGES), since a message may hold what a client must
not see.
"""

from __future__ import annotations

import json
from typing import Any, Final

from ..constants import RESULT_TOO_LARGE, TASK_FAILED, TASK_REVOKED, TIMEOUT_ERROR, WORKER_LOST
from ..protocol import Failure, Pending, Progress, Returned, Started

CatalogState = Returned | Failure | Pending | Started | Progress

_TIMEOUT_EXCEPTIONS: Final = frozenset({"TimeLimitExceeded", "SoftTimeLimitExceeded"})
_PENDING_STATES: Final = frozenset({"PENDING", "RECEIVED", "RETRY"})
_MAX_MESSAGE_CHARS: Final = 200  # of an exception's message, when messages are shown


def catalog_state(raw: bytes | str, *, max_result_bytes: int, error_messages: bool = False) -> CatalogState:
    """What a stored (or published) meta says about a catalog task."""
    if len(raw) > max_result_bytes:
        return Failure(RESULT_TOO_LARGE, len(raw))  # not even parsed: its size is the problem
    try:
        meta = json.loads(raw)
        status = meta["status"]
    except (ValueError, TypeError, KeyError):
        return Failure(TASK_FAILED)
    if not isinstance(status, str):
        return Failure(TASK_FAILED)
    return _state(status, meta.get("result"), error_messages)


def _state(status: str, result: Any, error_messages: bool) -> CatalogState:
    if status == "SUCCESS":
        return Returned(json.dumps(result))
    if status == "STARTED":
        return Started()
    if status in _PENDING_STATES:
        return Pending()
    if status == "REVOKED":
        expired = isinstance(result, dict) and result.get("exc_message") in (["expired"], "expired")
        return Failure(TIMEOUT_ERROR if expired else TASK_REVOKED)
    if status == "FAILURE":
        return Failure(failure_message(result, error_messages))
    # A state of the task's own: the task goes on.
    return Progress(status, json.dumps(result))


def failure_message(result: Any, error_messages: bool) -> str:
    """``Task failed: <exception type>``, and its message when the operator allows it."""
    exc_type = result.get("exc_type") if isinstance(result, dict) else None
    if not isinstance(exc_type, str) or not exc_type:
        return TASK_FAILED
    if exc_type in _TIMEOUT_EXCEPTIONS:
        return TIMEOUT_ERROR
    if exc_type == "AttemptsExhausted":
        return WORKER_LOST
    message = f"{TASK_FAILED}: {exc_type}"
    if error_messages:
        detail = _exception_text(result.get("exc_message"))
        if detail:
            message += f": {detail[:_MAX_MESSAGE_CHARS]}"
    return message


def _exception_text(exc_message: Any) -> str:
    """Celery stores an exception's arguments (a list), or its text."""
    if isinstance(exc_message, list | tuple):
        return ", ".join(str(arg) for arg in exc_message)
    return "" if exc_message is None else str(exc_message)
