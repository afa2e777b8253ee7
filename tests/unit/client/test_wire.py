"""The client library and a frame refused for its rate: the refusal names its request (the gateway
echoes the id), and the frame was never served, so it is asked again later, even a factorial."""

from __future__ import annotations

from factorial_ws.client.errors import (
    RateLimited,
    ServerBusy,
    ServiceUnavailable,
    StorageFull,
    StorageNearlyFull,
    TaskFailed,
    error_for,
)
from factorial_ws.client.wire import OUTCOME_ERRORS, TRANSIENT_ERRORS, Reply, Request, Step
from factorial_ws.constants import RATE_LIMITED, SERVICE_UNAVAILABLE, STORAGE_FULL, STORAGE_NEARLY_FULL


def test_a_factorial_refused_for_its_rate_is_asked_again_later() -> None:
    request = Request(number=5)
    request.frame(0)

    assert request.on_reply(Reply("error", None, "0", RATE_LIMITED)) is Step.ASK_LATER
    assert isinstance(request.error, RateLimited)  # raised only if asking again never works
    assert request.frame(1) == '{"type": "factorial", "number": 5, "id": 1}'


def test_service_unavailable_on_the_callers_own_ask_is_still_the_callers() -> None:
    request = Request(number=5)
    request.frame(0)

    assert request.on_reply(Reply("error", None, "0", SERVICE_UNAVAILABLE)) is Step.FAILED
    assert isinstance(request.error, ServiceUnavailable)


def test_a_full_redis_maps_to_its_own_errors_one_final_and_one_to_ask_again() -> None:
    unstored = error_for(STORAGE_FULL, "t1")
    assert isinstance(unstored, StorageFull) and isinstance(unstored, TaskFailed)
    assert STORAGE_FULL in OUTCOME_ERRORS and STORAGE_FULL not in TRANSIENT_ERRORS
    refused = error_for(STORAGE_NEARLY_FULL)
    assert isinstance(refused, StorageNearlyFull) and isinstance(refused, ServerBusy)
    assert STORAGE_NEARLY_FULL in TRANSIENT_ERRORS
