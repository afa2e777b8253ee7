"""Celery's stored result meta, decoded into the outcome a client is told."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from factorial_ws.constants import TASK_FAILED, TASK_REVOKED, WORKER_LOST
from factorial_ws.gateway.results import outcome_from_meta
from factorial_ws.protocol import Failure, Pending, Success

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


@pytest.mark.parametrize("status", ["PENDING", "RECEIVED", "RETRY"])  # STARTED: test_progress_protocol
def test_unfinished_states_are_pending(status: str) -> None:
    assert outcome_from_meta(meta(status)) == Pending()


@pytest.mark.parametrize("raw", [b"", b"garbage", b"[]", b"{}", b'"SUCCESS"', b"\xff\xfe", b"null"])
def test_garbage_meta_is_a_failed_task(raw: bytes) -> None:
    assert outcome_from_meta(raw) == Failure(TASK_FAILED)
