"""A chatty task cannot flood a client: its states are relayed at most one per interval, the
latest winning over those in between, and none once the task has ended."""

from __future__ import annotations

import asyncio
import time

from factorial_ws.gateway.progress import Latest, relay

INTERVAL_S = 0.05


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
    await asyncio.wait_for(relaying, 1)
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
    await asyncio.wait_for(relay(latest, ended, send, INTERVAL_S), 1)
    assert sent == []


async def test_a_state_taken_is_not_taken_again() -> None:
    latest: Latest[str] = Latest()
    latest.put("a")
    latest.put("b")
    assert await latest.take() == "b"
    taking = asyncio.ensure_future(latest.take())
    await asyncio.sleep(0.01)
    assert not taking.done()
    latest.put("c")
    assert await asyncio.wait_for(taking, 1) == "c"
