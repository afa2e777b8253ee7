"""A chatty task cannot flood a client: its states are relayed at most one per interval, the
latest winning over those in between, and none once the task has ended; a relay that ends, or
whose wait is cancelled, leaves nothing running behind it."""

from __future__ import annotations

import asyncio
import time

from factorial_ws.gateway.progress import Latest, relay
from support import UNIT_S

INTERVAL_S = 0.05
STEP_TIMEOUT_S = UNIT_S


async def test_states_are_coalesced_to_one_per_interval_latest_first() -> None:
    latest: Latest[int] = Latest()
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sent: list[int] = []

    async def send(value: int) -> None:
        sent.append(value)

    relaying = asyncio.create_task(relay(latest, ended, send, INTERVAL_S))
    started_s = time.monotonic()
    for value in range(100):  # 100 states in about 5 intervals (more on a loaded machine)
        latest.put(value)
        await asyncio.sleep(INTERVAL_S / 20)
    await asyncio.sleep(INTERVAL_S * 2)
    elapsed_s = time.monotonic() - started_s
    ended.set_result(None)
    await asyncio.wait_for(relaying, STEP_TIMEOUT_S)
    assert sent[0] == 0  # the first at once
    assert sent[-1] == 99  # the last state is never lost while the task runs
    # One at once, then at most one per interval of the time they took.
    assert sent == sorted(sent) and len(sent) <= 1 + elapsed_s / INTERVAL_S
    assert len(sent) < 100


async def test_nothing_is_sent_once_the_task_ended() -> None:
    latest: Latest[int] = Latest()
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sent: list[int] = []

    async def send(value: int) -> None:
        sent.append(value)

    ended.set_result(None)
    latest.put(1)
    await asyncio.wait_for(relay(latest, ended, send, INTERVAL_S), STEP_TIMEOUT_S)
    assert sent == []


async def test_a_state_taken_is_not_taken_again() -> None:
    latest: Latest[str] = Latest()
    latest.put("a")
    latest.put("b")
    assert await latest.take() == "b"
    taking = asyncio.ensure_future(latest.take())
    await asyncio.sleep(0.01 * UNIT_S)
    assert not taking.done()
    latest.put("c")
    assert await asyncio.wait_for(taking, STEP_TIMEOUT_S) == "c"


def tasks_left(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """The tasks started since ``before`` that are still running."""
    return {task for task in asyncio.all_tasks() - before if not task.done()}


async def test_a_relay_whose_wait_is_cancelled_leaves_no_task_behind() -> None:
    # The client cancels its wait, or its connection closes, while no state has come.
    latest: Latest[int] = Latest()
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    before = asyncio.all_tasks()
    relaying = asyncio.create_task(relay(latest, ended, lambda _: asyncio.sleep(0), INTERVAL_S))
    await asyncio.sleep(0)  # it waits for a state
    relaying.cancel()
    await asyncio.gather(relaying, return_exceptions=True)
    await asyncio.sleep(0)
    assert relaying.cancelled()
    assert not tasks_left(before), "the wait for the next state outlived its relay"


async def test_a_task_that_ends_while_no_state_came_ends_the_relay_and_its_wait_for_one() -> None:
    latest: Latest[int] = Latest()
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    before = asyncio.all_tasks()
    relaying = asyncio.create_task(relay(latest, ended, lambda _: asyncio.sleep(0), INTERVAL_S))
    await asyncio.sleep(0)
    ended.set_result(None)
    await asyncio.wait_for(relaying, STEP_TIMEOUT_S)
    await asyncio.sleep(0)
    assert not tasks_left(before), "the wait for the next state outlived its relay"


async def test_a_task_that_ends_between_two_states_ends_the_relay_at_once() -> None:
    latest: Latest[int] = Latest()
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sent: list[int] = []

    async def send(value: int) -> None:
        sent.append(value)

    # An interval no step of the test comes near: the relay must not sit it out.
    relaying = asyncio.create_task(relay(latest, ended, send, 60 * STEP_TIMEOUT_S))
    latest.put(1)
    for _ in range(10):  # a few turns: taken, sent, then in the interval after it
        await asyncio.sleep(0)
    assert sent == [1]
    ended.set_result(None)
    latest.put(2)  # after the end: dropped, the result says more
    await asyncio.wait([relaying], timeout=0.1 * UNIT_S)
    assert relaying.done(), "the relay sat out its interval after the task had ended"
    assert sent == [1]
