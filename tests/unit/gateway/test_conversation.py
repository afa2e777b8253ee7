"""The session's per-frame rules without I/O (gateway/conversation.py): rate limit, refusals,
the in-flight cap, the refusal log's rate, the bookkeeping a cancel is decided from, and the
cancel's reply. Each runs in microseconds: no socket, no Redis, no event loop."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from factorial_ws.catalog import Catalog
from factorial_ws.catalog.factorial import factorial_catalog
from factorial_ws.config import Config
from factorial_ws.constants import (
    JSON_DECODE_ERROR,
    RATE_LIMITED,
    TASK_CANCELLED,
    TASK_NOT_CANCELLED,
    TASK_NOT_YOURS,
    TOO_MANY_IN_FLIGHT,
    UNKNOWN_TASK,
)
from factorial_ws.gateway.cancel import CancelAction
from factorial_ws.gateway.conversation import (
    BINARY_FRAME,
    REFUSALS_LOGGED_IN_A_ROW,
    Conversation,
    Refusal,
    RefusalLog,
    TaskLedger,
    ended_first,
    host_of,
    label_of,
    number_of,
    peer_of,
    queue_of,
    shares,
    stored_bytes,
    task_name,
    wait_limit_s,
    work_of,
)
from factorial_ws.gateway.messages import Call
from factorial_ws.gateway.stored_tasks import Snapshot, Unknown
from factorial_ws.protocol import (
    CancelRequest,
    FactorialRequest,
    Failure,
    Pending,
    ResultRequest,
    Returned,
    Started,
    Success,
    TaskRequest,
)
from factorial_ws.worker.stored_meta import Stored

TASK_ID = "8d5df9bd-922a-465d-a26b-c00df06a59ae"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


class CountParams(BaseModel):
    text: str


def _catalog() -> Catalog:
    catalog = factorial_catalog(Config())
    catalog.add("count_words", celery_task="wc.count", params=CountParams, queue="wc", timeout=7)
    catalog.add(
        "shared_count", celery_task="wc.count", params=CountParams, queue="wc", timeout=7, share_results=True
    )
    return catalog


def _conversation(
    *, burst: int = 100, max_tasks_in_flight: int = 10, clock: Clock | None = None
) -> Conversation:
    return Conversation(
        catalog=_catalog(),
        max_number=1000,
        max_tasks_in_flight=max_tasks_in_flight,
        rate_limit_per_s=1.0,
        rate_limit_burst=burst,
        clock=clock or Clock(),
    )


def _frame(**fields: object) -> str:
    return json.dumps(fields)


# --- frames ---


def test_a_valid_frame_becomes_its_request() -> None:
    request = _conversation().receive(_frame(type="factorial", number=5, id=3), in_flight=0)
    assert request == FactorialRequest(5, 3)


def test_past_the_burst_a_frame_is_refused_with_its_id_counted_but_not_logged() -> None:
    clock = Clock()
    conversation = _conversation(burst=2, clock=clock)
    for _ in range(2):
        assert not isinstance(conversation.receive(_frame(type="factorial", number=5), 0), Refusal)
    refusal = conversation.receive(_frame(type="factorial", number=5, id="x"), 0)
    assert refusal == Refusal(RATE_LIMITED, request_id="x", logged=False)
    clock.now_s += 1.0  # one token back
    assert isinstance(conversation.receive(_frame(type="factorial", number=5), 0), FactorialRequest)


def test_every_frame_spends_a_token_even_a_binary_or_malformed_one() -> None:
    conversation = _conversation(burst=2)
    conversation.receive(b"\x00", 0)
    conversation.receive("{", 0)
    refusal = conversation.receive(_frame(type="factorial", number=5), 0)
    assert isinstance(refusal, Refusal) and refusal.message == RATE_LIMITED


def test_a_binary_frame_is_refused_with_the_id_it_carries() -> None:
    refusal = _conversation().receive(_frame(type="factorial", number=5, id=7).encode(), 0)
    assert refusal == Refusal(BINARY_FRAME, request_id=7)


@pytest.mark.parametrize(
    ("frame", "message"),
    [("{", JSON_DECODE_ERROR), (_frame(type="sqrt", number=4, id=1), UNKNOWN_TASK)],
)
def test_a_frame_that_does_not_parse_is_refused_and_counted_as_invalid(frame: str, message: str) -> None:
    refusal = _conversation().receive(frame, 0)
    assert isinstance(refusal, Refusal)
    assert (refusal.message, refusal.counted_as, refusal.logged) == (message, "invalid", True)


def test_an_invalid_request_is_refused_with_its_id() -> None:
    refusal = _conversation().receive(_frame(type="factorial", number=-1, id="a"), 0)
    assert isinstance(refusal, Refusal)
    assert refusal.message.startswith("Invalid request") and refusal.request_id == "a"


def test_below_the_in_flight_cap_a_request_is_carried_out() -> None:
    request = _conversation(max_tasks_in_flight=2).receive(_frame(type="factorial", number=5), in_flight=1)
    assert isinstance(request, FactorialRequest)


def test_at_the_in_flight_cap_a_factorial_is_refused_without_a_task_id() -> None:
    refusal = _conversation(max_tasks_in_flight=2).receive(_frame(type="factorial", number=5, id=1), 2)
    assert refusal == Refusal(TOO_MANY_IN_FLIGHT, None, 1, counted_as="factorial")


@pytest.mark.parametrize(("kind", "label"), [("result", "result"), ("cancel", "cancel")])
def test_at_the_in_flight_cap_a_lookup_or_cancel_is_refused_with_its_task_id(kind: str, label: str) -> None:
    refusal = _conversation(max_tasks_in_flight=2).receive(_frame(type=kind, task_id=TASK_ID, id=1), 2)
    assert refusal == Refusal(TOO_MANY_IN_FLIGHT, TASK_ID, 1, counted_as=label)


def test_each_request_is_counted_under_its_kind_or_catalog_task() -> None:
    conversation = _conversation()
    frames = [
        _frame(type="factorial", number=5),
        _frame(type="count_words", text="a"),
        _frame(type="result", task_id=TASK_ID),
        _frame(type="cancel", task_id=TASK_ID),
    ]
    requests = [conversation.receive(frame, 0) for frame in frames]
    assert [type(request) for request in requests] == [
        FactorialRequest,
        TaskRequest,
        ResultRequest,
        CancelRequest,
    ]
    assert [label_of(request) for request in requests if not isinstance(request, Refusal)] == [
        "factorial",
        "count_words",
        "result",
        "cancel",
    ]


# --- what a submission asks ---


def test_a_factorial_is_its_number_on_its_queue() -> None:
    request = FactorialRequest(5)
    assert (work_of(request), queue_of(5), number_of(request), task_name(request)) == (5, "soft", 5, None)
    assert queue_of(1001) == "hard"
    assert shares(5, result_reuse=True) and not shares(5, result_reuse=False)


def test_a_catalog_task_is_its_entry_call_and_shares_only_when_its_entry_does() -> None:
    request = _conversation().receive(_frame(type="count_words", text="a"), 0)
    assert isinstance(request, TaskRequest)
    work = work_of(request)
    assert isinstance(work, Call) and queue_of(work) == "wc"
    assert (number_of(request), task_name(request)) == (None, "count_words")
    assert not shares(work, result_reuse=True)
    shared = _conversation().receive(_frame(type="shared_count", text="a"), 0)
    assert isinstance(shared, TaskRequest) and shares(work_of(shared), result_reuse=False)


def test_a_request_waits_its_entry_timeout_else_the_hard_task_timeout() -> None:
    catalog = _catalog()
    assert wait_limit_s(catalog, "count_words", 60.0) == 7.0
    assert wait_limit_s(catalog, None, 60.0) == 60.0
    assert wait_limit_s(catalog, "gone_from_the_catalog", 60.0) == 60.0


def test_addresses_read_from_the_connection_or_a_question_mark() -> None:
    assert (host_of(("10.0.0.1", 4000)), peer_of(("10.0.0.1", 4000))) == ("10.0.0.1", "10.0.0.1:4000")
    assert (host_of(None), peer_of(None), host_of(()), peer_of(("only",))) == ("?", "?", "?", "?")


# --- the refusal log ---


def test_refusals_are_logged_in_a_row_then_one_a_second_counting_those_left_out() -> None:
    clock = Clock()
    log = RefusalLog(clock)
    assert [log.line() for _ in range(REFUSALS_LOGGED_IN_A_ROW)] == [0] * REFUSALS_LOGGED_IN_A_ROW
    assert [log.line() for _ in range(3)] == [None, None, None]
    clock.now_s += 1.0
    assert log.line() == 3  # the next line written says how many were left out
    assert log.line() is None
    clock.now_s += 1.0
    assert log.line() == 1


# --- what a cancel is decided from ---


def test_a_created_task_may_be_revoked_until_it_ends() -> None:
    ledger: TaskLedger[str] = TaskLedger()
    assert not ledger.facts(TASK_ID).created
    ledger.created(TASK_ID)
    assert ledger.facts(TASK_ID).created
    ledger.ended(TASK_ID)
    assert not ledger.facts(TASK_ID).created


def test_requests_wait_for_a_task_until_each_stops() -> None:
    ledger: TaskLedger[str] = TaskLedger()
    first = ledger.add_waiting(TASK_ID, "waiter 1", 1)
    ledger.add_waiting(TASK_ID, "waiter 2", 2)
    assert ledger.waiting_requests(TASK_ID) == {
        "waiter 1": first,
        "waiter 2": ledger.waiting_requests(TASK_ID)["waiter 2"],
    }
    assert (ledger.facts(TASK_ID).waits_here, ledger.facts(TASK_ID).still_waiting) == (True, 2)
    ledger.remove_waiting(TASK_ID, "waiter 1")
    ledger.remove_waiting(TASK_ID, "waiter 2")
    ledger.remove_waiting(TASK_ID, "waiter 2")  # a second stop changes nothing
    assert ledger.waiting_requests(TASK_ID) == {}
    assert (ledger.facts(TASK_ID).waits_here, ledger.facts(TASK_ID).still_waiting) == (False, 0)


def test_a_request_sending_its_outcome_still_waits_here_but_is_not_a_waiter_the_hub_counts() -> None:
    ledger: TaskLedger[str] = TaskLedger()
    ledger.add_waiting(TASK_ID, "waiter 1", 1).sending_outcome = True
    ledger.add_waiting(TASK_ID, "waiter 2", 2)
    facts = ledger.facts(TASK_ID)
    assert (facts.waits_here, facts.still_waiting) == (True, 1)


def test_the_waiting_requests_given_are_a_copy_a_cancel_may_end() -> None:
    ledger: TaskLedger[str] = TaskLedger()
    ledger.add_waiting(TASK_ID, "waiter", None)
    waiting = ledger.waiting_requests(TASK_ID)
    ledger.remove_waiting(TASK_ID, "waiter")
    assert list(waiting) == ["waiter"]


def test_a_revoke_leaves_nothing_to_revoke() -> None:
    ledger: TaskLedger[str] = TaskLedger()
    ledger.created(TASK_ID)
    ledger.cancel_began(TASK_ID)
    ledger.revoked(TASK_ID)
    ledger.cancel_ended(TASK_ID)
    assert not ledger.facts(TASK_ID).created


def test_while_another_cancel_of_the_task_is_in_progress_the_connection_stays_its_creator() -> None:
    # That other cancel may have read the task as queued: it must still be allowed to revoke.
    ledger: TaskLedger[str] = TaskLedger()
    ledger.created(TASK_ID)
    ledger.cancel_began(TASK_ID)
    ledger.cancel_began(TASK_ID)
    ledger.revoked(TASK_ID)
    ledger.cancel_ended(TASK_ID)
    assert ledger.facts(TASK_ID).created
    ledger.revoked(TASK_ID)  # the other cancel revoked it too
    ledger.cancel_ended(TASK_ID)
    assert not ledger.facts(TASK_ID).created


# The cancel table, row by row, from what the ledger knows (others_wait: asked of a creator only).
@pytest.mark.parametrize(
    ("created", "waits_here", "others_wait", "action"),
    [
        (True, False, False, CancelAction.REVOKE),
        (True, True, False, CancelAction.REVOKE),
        (True, True, True, CancelAction.END_OWN_WAITS),
        (True, False, True, CancelAction.OTHERS_WAIT),
        (False, True, False, CancelAction.END_OWN_WAITS),
        (False, False, False, CancelAction.NOT_YOURS),
    ],
)
def test_the_cancel_table(created: bool, waits_here: bool, others_wait: bool, action: CancelAction) -> None:
    ledger: TaskLedger[str] = TaskLedger()
    if created:
        ledger.created(TASK_ID)
    if waits_here:
        ledger.add_waiting(TASK_ID, "waiter", None)
    assert ledger.facts(TASK_ID).action(others_wait=others_wait) is action


def test_a_refused_cancel_names_why() -> None:
    assert CancelAction.OTHERS_WAIT.refusal == TASK_NOT_CANCELLED
    assert CancelAction.NOT_YOURS.refusal == TASK_NOT_YOURS


# --- the cancel's reply ---


@pytest.mark.parametrize(
    "snapshot",
    [
        Success("120"),
        Returned("{}"),
        Stored(10_000),
        Failure("Task failed: ValueError"),
        Failure("Timeout error"),
    ],
)
def test_a_task_that_ended_first_answers_the_cancel_with_its_outcome(snapshot: Snapshot) -> None:
    assert ended_first(snapshot)


@pytest.mark.parametrize("snapshot", [Failure(TASK_CANCELLED), Pending(), Started(), Unknown()])
def test_a_cancelled_task_or_one_running_on_for_others_answers_cancelled(snapshot: Snapshot) -> None:
    assert not ended_first(snapshot)


def test_a_catalog_result_charges_its_stored_bytes() -> None:
    assert stored_bytes(Returned("[1, 2]")) == len("[1, 2]") + 160
    assert stored_bytes(Stored(5000, "count_words")) == 5000
    assert stored_bytes(Failure("Task failed: result too large", stored_bytes=9000)) == 9000
    assert stored_bytes(Failure("Task failed: ValueError")) is None
