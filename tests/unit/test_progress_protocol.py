"""The wire protocol's additions of issue 13 without a socket: the "progress" flag, the cancel
request, the queued / started / cancelled replies, and how Celery's STARTED meta is read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from factorial_ws.constants import TASK_CANCELLED, UNKNOWN_TASK
from factorial_ws.protocol import (
    CancelRequest,
    FactorialRequest,
    ProtocolError,
    ResultRequest,
    Started,
    cancelled,
    error,
    parse_request,
    queued,
    started,
)
from factorial_ws.worker.stored_meta import outcome_from_meta

MAX = 1_000_000
TASK_ID = "2f1e0b4c-9a8d-4e7f-8c6b-5a4d3c2b1a09"


def parse(message: Any) -> Any:
    return parse_request(json.dumps(message), max_number=MAX)


def refusal(message: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse(message)
    return caught.value


# --- requests -------------------------------------------------------------------------------


def test_a_factorial_request_asks_for_progress_only_when_it_says_so() -> None:
    assert parse({"type": "factorial", "number": 5}) == FactorialRequest(5)
    assert parse({"type": "factorial", "number": 5}).progress is False
    assert parse({"type": "factorial", "number": 5, "progress": True}) == FactorialRequest(5, progress=True)
    assert parse({"type": "factorial", "number": 5, "progress": False}) == FactorialRequest(5)


def test_a_lookup_may_ask_for_progress_too() -> None:
    request = parse({"type": "result", "task_id": TASK_ID, "progress": True, "id": 3})
    assert request == ResultRequest(TASK_ID, 3, progress=True)


@pytest.mark.parametrize("value", [1, 0, "true", None, [], {}])
def test_progress_must_be_a_json_boolean(value: Any) -> None:
    problem = refusal({"type": "factorial", "number": 5, "progress": value, "id": "a"})
    assert problem.message == "Invalid request: 'progress' must be true or false"
    assert problem.request_id == "a"


def test_a_cancel_names_a_task_id() -> None:
    assert parse({"type": "cancel", "task_id": TASK_ID}) == CancelRequest(TASK_ID)
    assert parse({"type": "cancel", "task_id": TASK_ID, "id": 9}) == CancelRequest(TASK_ID, 9)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "cancel"}, "Invalid request: missing field 'task_id'"),
        ({"type": "cancel", "task_id": "nope"}, "Invalid request: 'task_id' must be a task id (a UUID)"),
        (
            {"type": "cancel", "task_id": TASK_ID.upper()},
            "Invalid request: 'task_id' must be a task id (a UUID)",
        ),
    ],
)
def test_a_cancel_without_a_valid_task_id_is_refused(message: dict[str, Any], expected: str) -> None:
    assert refusal(message).message == expected


def test_other_types_are_still_the_seeds_unknown_task() -> None:
    assert refusal({"type": "cancelled", "task_id": TASK_ID}).message == UNKNOWN_TASK


# --- replies --------------------------------------------------------------------------------


def test_queued_says_how_many_tasks_are_ahead() -> None:
    assert json.loads(queued(TASK_ID, 3)) == {"type": "queued", "task_id": TASK_ID, "ahead": 3}
    assert json.loads(queued(TASK_ID, 0, "r")) == {
        "type": "queued",
        "task_id": TASK_ID,
        "ahead": 0,
        "id": "r",
    }


def test_started_and_cancelled_name_the_task_and_echo_the_id() -> None:
    assert json.loads(started(TASK_ID)) == {"type": "started", "task_id": TASK_ID}
    assert json.loads(started(TASK_ID, 7)) == {"type": "started", "task_id": TASK_ID, "id": 7}
    assert json.loads(cancelled(TASK_ID)) == {"type": "cancelled", "task_id": TASK_ID}
    assert json.loads(cancelled(TASK_ID, "c")) == {"type": "cancelled", "task_id": TASK_ID, "id": "c"}


def test_a_cancelled_task_is_an_error_reply() -> None:
    assert json.loads(error(TASK_CANCELLED, TASK_ID, 2)) == {
        "type": "error",
        "result": "Task cancelled",
        "task_id": TASK_ID,
        "id": 2,
    }


# --- Celery's stored meta -------------------------------------------------------------------


def test_celerys_started_state_is_read_as_started() -> None:
    meta = {"status": "STARTED", "result": {"pid": 7, "hostname": "w@h"}, "task_id": TASK_ID}
    assert outcome_from_meta(json.dumps(meta)) == Started()
