"""Celery's stored task meta, read into what a client is told.

A factorial's meta: digits, or a failure that hides its details. A catalog task's: any JSON
result, the exception's type only for a failure (its message only when the operator asks), the
task's own states as progress, and a result larger than its entry allows refused unread."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from factorial_ws.constants import TASK_CANCELLED, TASK_FAILED, TASK_REVOKED, WORKER_LOST
from factorial_ws.protocol import Failure, Pending, Progress, Returned, Started, Success
from factorial_ws.worker.stored_meta import cancelled_if_marked, catalog_state, outcome_from_meta

TASK_ID = "2f1e0b4c-9a8d-4e7f-8c6b-5a4d3c2b1a09"


def meta(status: str, result: Any = None) -> str:
    return json.dumps({"status": status, "result": result, "task_id": TASK_ID, "traceback": None})


def exc(exc_type: str) -> dict[str, Any]:
    return {"exc_type": exc_type, "exc_message": ["detail"], "exc_module": "billiard.exceptions"}


def test_success_meta_is_the_digits() -> None:
    assert outcome_from_meta(meta("SUCCESS", str(math.factorial(20)))) == Success("2432902008176640000")
    assert outcome_from_meta(meta("SUCCESS", "1").encode()) == Success("1")


@pytest.mark.parametrize("result", [120, None, "", "12x", ["1"]])
def test_success_meta_without_digits_is_a_failed_task(result: Any) -> None:
    assert outcome_from_meta(meta("SUCCESS", result)) == Failure(TASK_FAILED)


@pytest.mark.parametrize("exc_type", ["TimeLimitExceeded", "SoftTimeLimitExceeded"])
def test_time_limit_failure_is_the_seeds_timeout_error(exc_type: str) -> None:
    assert outcome_from_meta(meta("FAILURE", exc(exc_type))) == Failure("Timeout error")


def test_exhausted_attempts_say_the_worker_died() -> None:
    assert outcome_from_meta(meta("FAILURE", exc("AttemptsExhausted"))) == Failure(WORKER_LOST)


def test_other_failure_hides_its_details() -> None:
    outcome = outcome_from_meta(meta("FAILURE", exc("ValueError")))
    assert outcome == Failure(TASK_FAILED)


def test_revoked_task_is_reported_as_revoked() -> None:
    assert outcome_from_meta(meta("REVOKED", exc("TaskRevokedError"))) == Failure(TASK_REVOKED)


def test_a_revoked_task_is_cancelled_only_when_a_client_marked_it_so() -> None:
    assert cancelled_if_marked(Failure(TASK_REVOKED), marked=True) == Failure(TASK_CANCELLED)
    assert cancelled_if_marked(Failure(TASK_REVOKED), marked=False) == Failure(TASK_REVOKED)
    assert cancelled_if_marked(Failure(TASK_FAILED), marked=True) == Failure(TASK_FAILED)


@pytest.mark.parametrize("status", ["PENDING", "RECEIVED", "RETRY"])  # STARTED: test_progress_protocol
def test_unfinished_states_are_pending(status: str) -> None:
    assert outcome_from_meta(meta(status)) == Pending()


@pytest.mark.parametrize("raw", [b"", b"garbage", b"[]", b"{}", b'"SUCCESS"', b"\xff\xfe", b"null"])
def test_garbage_meta_is_a_failed_task(raw: bytes) -> None:
    assert outcome_from_meta(raw) == Failure(TASK_FAILED)


# --- a catalog task's meta ---


def state(meta: dict[str, Any], **options: Any) -> object:
    return catalog_state(
        json.dumps(meta), max_result_bytes=options.pop("max_result_bytes", 10_000), **options
    )


@pytest.mark.parametrize("result", [{"a": 2}, [1, "x"], "120", 120, None, True])
def test_a_success_is_its_result_as_json(result: Any) -> None:
    returned = state({"status": "SUCCESS", "result": result})
    assert isinstance(returned, Returned) and json.loads(returned.json_text) == result


FAILED = {
    "status": "FAILURE",
    "result": {"exc_type": "ValueError", "exc_message": ["secret"], "exc_module": "builtins"},
}


def test_a_failure_names_the_exception_type_only() -> None:
    assert state(FAILED) == Failure("Task failed: ValueError")


def test_the_operator_may_show_the_exceptions_message() -> None:
    assert state(FAILED, error_messages=True) == Failure("Task failed: ValueError: secret")


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"exc_type": "TimeLimitExceeded"}, "Timeout error"),
        ({"exc_type": "SoftTimeLimitExceeded"}, "Timeout error"),
        ({}, "Task failed"),
        ("not a dict", "Task failed"),
    ],
)
def test_time_limits_and_unreadable_failures(result: Any, message: str) -> None:
    assert state({"status": "FAILURE", "result": result}) == Failure(message)


def test_the_tasks_own_states_are_progress_with_their_meta() -> None:
    assert state({"status": "PROGRESS", "result": {"current": 3, "total": 10}}) == Progress(
        "PROGRESS", '{"current": 3, "total": 10}'
    )


@pytest.mark.parametrize(
    ("status", "expected"), [("STARTED", Started()), ("PENDING", Pending()), ("RETRY", Pending())]
)
def test_celerys_own_running_states(status: str, expected: object) -> None:
    assert state({"status": status, "result": None}) == expected


def test_revoked_and_expired() -> None:
    assert state({"status": "REVOKED", "result": None}) == Failure("Task revoked")
    expired = {"exc_type": "TaskRevokedError", "exc_message": ["expired"]}
    assert state({"status": "REVOKED", "result": expired}) == Failure("Timeout error")


def test_a_result_larger_than_the_entry_allows_fails_unread() -> None:
    meta = {"status": "SUCCESS", "result": "x" * 200}
    assert state(meta, max_result_bytes=100) == Failure(
        "Task failed: its result is larger than its task allows"
    )


def test_a_meta_that_is_not_json_is_a_failure() -> None:
    assert catalog_state(b"{not json", max_result_bytes=100) == Failure("Task failed")


def test_a_failures_metric_label_is_its_exception_type_never_its_message() -> None:
    from factorial_ws.gateway.metrics import error_label

    assert error_label("Task failed: ValueError: user 42's secret") == "Task failed: ValueError"
    assert error_label("Task failed: ValueError") == "Task failed: ValueError"
    assert error_label("Task failed: its worker died on every attempt") == (
        "Task failed: its worker died on every attempt"
    )
    assert error_label("Invalid request: text: Field required") == "Invalid request"


def test_a_result_too_large_still_says_how_much_it_stored_for_the_ledger() -> None:
    meta = json.dumps({"status": "SUCCESS", "result": "x" * 200})
    failure = catalog_state(meta, max_result_bytes=100)
    assert isinstance(failure, Failure) and failure.stored_bytes == len(meta)
