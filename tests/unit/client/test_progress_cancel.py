"""The client library's progress states and cancel (issue 13, parts 2 and 3) without the real
gateway: the pure request steps (``wire``), and ``Client`` against the scripted gateway of
test_client_library (a real websockets server in this process)."""

from __future__ import annotations

import asyncio
import json

import pytest

from factorial_ws.client import TaskCancelled, TaskFailed, TaskNotCancelled, UnknownTaskId
from factorial_ws.client.errors import error_for
from factorial_ws.client.wire import Reply, Request, Step, parse_reply
from factorial_ws.constants import (
    TASK_CANCELLED,
    TASK_FAILED,
    TASK_NOT_CANCELLED,
    TASK_NOT_YOURS,
    UNKNOWN_TASK_ID,
)
from support import UNIT_S

from .test_client_library import (
    OTHER_ID,
    STEP_TIMEOUT_S,
    TASK_ID,
    ScriptedGateway,
    gateway,
    quick_client,
    send,
    send_success,
)

__all__ = ["gateway"]  # the fixture, shared with test_client_library

# --- one request's steps ---------------------------------------------------------------------


def test_task_cancelled_and_not_cancelled_have_their_own_exceptions() -> None:
    assert type(error_for(TASK_CANCELLED, TASK_ID)) is TaskCancelled
    assert type(error_for(TASK_NOT_CANCELLED, TASK_ID)) is TaskNotCancelled
    assert type(error_for(TASK_NOT_YOURS, TASK_ID)) is TaskNotCancelled


def test_a_factorial_without_progress_is_asked_exactly_as_before() -> None:
    request = Request(number=5)
    assert request.frame(0) == '{"type": "factorial", "number": 5, "id": 0}'


def test_a_factorial_with_progress_asks_for_it_and_keeps_asking_for_it_by_task_id() -> None:
    request = Request(number=5, progress=True)
    assert json.loads(request.frame(0)) == {"type": "factorial", "number": 5, "id": 0, "progress": True}
    assert request.on_reply(Reply("result", TASK_ID, "0")) is Step.ACKED
    assert json.loads(request.frame(1)) == {"type": "result", "task_id": TASK_ID, "id": 1, "progress": True}


def test_queued_and_started_are_progress_with_how_many_are_ahead() -> None:
    request = Request(number=5, progress=True)
    request.frame(0)
    request.on_reply(Reply("result", TASK_ID, "0"))
    assert request.state == "pending"

    assert request.on_reply(
        parse_reply(f'{{"type": "queued", "task_id": "{TASK_ID}", "ahead": 3, "id": 0}}')
    ) is (Step.PROGRESS)
    assert (request.state, request.ahead) == ("queued", 3)
    assert request.on_reply(Reply("started", TASK_ID, "0")) is Step.PROGRESS
    assert request.state == "started"
    request.frame(1)  # asked again after a drop: "pending" does not undo "started"
    assert request.on_reply(Reply("pending", TASK_ID, "1")) is Step.WAIT
    assert request.state == "started"
    assert request.on_reply(Reply("success", TASK_ID, "1", "120")) is Step.DONE
    assert request.history == ["pending", "queued", "started", "done"]


def test_a_task_cancelled_ends_the_request_in_state_cancelled() -> None:
    request = Request(number=5, progress=True)
    request.frame(0)
    request.on_reply(Reply("result", TASK_ID, "0"))

    assert request.on_reply(Reply("error", TASK_ID, "0", TASK_CANCELLED)) is Step.FAILED
    assert isinstance(request.error, TaskCancelled) and request.state == "cancelled"


def test_a_cancel_is_asked_by_task_id_and_ends_cancelled() -> None:
    request = Request(cancel=TASK_ID)
    assert json.loads(request.frame(4)) == {"type": "cancel", "task_id": TASK_ID, "id": 4}

    assert request.on_reply(Reply("cancelled", TASK_ID, "4")) is Step.DONE
    assert request.cancel_outcome == "cancelled"


@pytest.mark.parametrize(
    "reply", [Reply("success", TASK_ID, "4", "120"), Reply("error", TASK_ID, "4", TASK_FAILED)]
)
def test_a_cancel_answered_with_the_tasks_outcome_found_it_finished(reply: Reply) -> None:
    request = Request(cancel=TASK_ID)
    request.frame(4)

    assert request.on_reply(reply) is Step.DONE
    assert request.cancel_outcome == "finished"


def test_a_cancel_of_an_unknown_id_fails() -> None:
    request = Request(cancel=TASK_ID)
    request.frame(4)

    assert request.on_reply(Reply("error", TASK_ID, "4", UNKNOWN_TASK_ID)) is Step.FAILED
    assert isinstance(request.error, UnknownTaskId)


# --- Client against a scripted gateway -------------------------------------------------------


async def test_a_progress_handle_goes_through_its_states_in_order(gateway: ScriptedGateway) -> None:
    async with quick_client(gateway.url) as client:
        submitting = asyncio.create_task(client.submit(1000000, progress=True))
        connection, request = await gateway.next_request()
        assert request == {"type": "factorial", "number": 1000000, "id": 0, "progress": True}
        await send(connection, type="result", task_id=TASK_ID, id=0)
        await send(connection, type="queued", task_id=TASK_ID, ahead=3, id=0)
        handle = await asyncio.wait_for(submitting, STEP_TIMEOUT_S)
        states = asyncio.create_task(collect_states(handle))
        await asyncio.sleep(0.05 * UNIT_S)
        assert handle.ahead == 3
        await send(connection, type="started", task_id=TASK_ID, id=0)
        await send_success(connection, TASK_ID, "120", 0)

        assert await asyncio.wait_for(handle, STEP_TIMEOUT_S) == 120
        assert await asyncio.wait_for(states, STEP_TIMEOUT_S) == ["pending", "queued", "started", "done"]
        assert handle.state == "done"


async def collect_states(handle: object) -> list[str]:
    return [state async for state in handle.states()]  # type: ignore[attr-defined]


async def test_handle_cancel_sends_cancel_and_the_handle_raises_task_cancelled(
    gateway: ScriptedGateway,
) -> None:
    async with quick_client(gateway.url) as client:
        submitting = asyncio.create_task(client.submit(1000000))
        connection, request = await gateway.next_request()
        await send(connection, type="result", task_id=TASK_ID, id=request["id"])
        handle = await asyncio.wait_for(submitting, STEP_TIMEOUT_S)

        cancelling = asyncio.create_task(handle.cancel())
        connection, cancel = await gateway.next_request()
        assert cancel == {"type": "cancel", "task_id": TASK_ID, "id": cancel["id"]}
        # As the gateway does: the waiting request's own final reply first, then the cancel's.
        await send(connection, type="error", result=TASK_CANCELLED, task_id=TASK_ID, id=request["id"])
        await send(connection, type="cancelled", task_id=TASK_ID, id=cancel["id"])

        assert await asyncio.wait_for(cancelling, STEP_TIMEOUT_S) is True
        with pytest.raises(TaskCancelled):
            await asyncio.wait_for(handle, STEP_TIMEOUT_S)
        assert handle.state == "cancelled"


async def test_client_cancel_of_a_finished_task_says_false(gateway: ScriptedGateway) -> None:
    async with quick_client(gateway.url) as client:
        cancelling = asyncio.create_task(client.cancel(OTHER_ID))
        connection, cancel = await gateway.next_request()
        await send_success(connection, OTHER_ID, "120", cancel["id"])  # the result, instead

        assert await asyncio.wait_for(cancelling, STEP_TIMEOUT_S) is False


async def test_client_cancel_of_an_unknown_id_raises(gateway: ScriptedGateway) -> None:
    async with quick_client(gateway.url) as client:
        cancelling = asyncio.create_task(client.cancel(OTHER_ID))
        connection, cancel = await gateway.next_request()
        await send(connection, type="error", result=UNKNOWN_TASK_ID, task_id=OTHER_ID, id=cancel["id"])

        with pytest.raises(UnknownTaskId):
            await asyncio.wait_for(cancelling, STEP_TIMEOUT_S)


async def test_a_cancel_in_flight_when_the_connection_drops_is_sent_again(gateway: ScriptedGateway) -> None:
    async with quick_client(gateway.url) as client:
        cancelling = asyncio.create_task(client.cancel(OTHER_ID))
        await gateway.next_request()
        await gateway.stop()
        await gateway.start(gateway.port)

        connection, again = await gateway.next_request()
        assert again == {"type": "cancel", "task_id": OTHER_ID, "id": again["id"]}
        await send(connection, type="cancelled", task_id=OTHER_ID, id=again["id"])
        assert await asyncio.wait_for(cancelling, STEP_TIMEOUT_S) is True


async def test_watch_gives_a_handle_for_a_task_id_with_its_progress(gateway: ScriptedGateway) -> None:
    async with quick_client(gateway.url) as client:
        handle = client.watch(TASK_ID, progress=True)
        connection, request = await gateway.next_request()
        assert request == {"type": "result", "task_id": TASK_ID, "id": 0, "progress": True}
        await send(connection, type="pending", task_id=TASK_ID, id=0)
        await send(connection, type="started", task_id=TASK_ID, id=0)
        await asyncio.sleep(0.05 * UNIT_S)
        assert handle.task_id == TASK_ID and handle.state == "started"
        await send(connection, type="error", result=TASK_FAILED, task_id=TASK_ID, id=0)

        with pytest.raises(TaskFailed):
            await asyncio.wait_for(handle, STEP_TIMEOUT_S)
        assert handle.state == "error"
