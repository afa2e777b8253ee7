"""A catalog task's stored meta, read into what its clients hear: any JSON result, the
exception's type only for a failure (its message only when the operator asks), the task's own
states as progress, and a result larger than its entry allows refused unread."""

from __future__ import annotations

import json
from typing import Any

import pytest

from factorial_ws.gateway.task_states import catalog_state
from factorial_ws.protocol import Failure, Pending, Progress, Returned, Started


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
