"""The canceller's broadcasts (``Canceller.revoke``): one per task however many cancel it, the
tasks cancelled while one is out go together in the next, a failed broadcast fails its own
cancels only, and a cancel that stops waiting takes nothing from the others. The broadcasts are
held and answered by the test (Celery's control API is the integration tests')."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from celery import Celery

from factorial_ws.gateway.cancel import Canceller

A, B, C, D = "task-a", "task-b", "task-c", "task-d"


class HeldBroadcasts(Canceller):
    """A canceller whose broadcasts wait at a gate each until the test answers them."""

    def __init__(self, app: Celery, client: aioredis.Redis) -> None:
        super().__init__(app, client, keep_s=60)
        self.sent: list[list[str]] = []
        self.gates: list[asyncio.Future[None]] = []

    async def _live_workers(self) -> set[str]:
        return {"celery@worker"}

    async def _in_thread(self, function: Any, *args: Any) -> Any:
        assert function == self._broadcast, function  # the only thread call a revoke makes
        task_ids, _ = args
        self.sent.append(list(task_ids))
        gate = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        await gate  # the answer, or the broadcast's failure
        return set()  # every live worker answered

    async def broadcasts_out(self, count: int) -> None:
        """Let the loop run until ``count`` broadcasts have been sent, a few turns at most."""
        for _ in range(10):
            if len(self.sent) >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"{len(self.sent)} broadcasts sent, not {count}: {self.sent}")


@pytest.fixture
async def canceller(app: Celery) -> AsyncIterator[HeldBroadcasts]:
    # A client that never connects: the live workers are the test's.
    async with aioredis.Redis(port=1) as client:
        canceller = HeldBroadcasts(app, client)
        yield canceller
        canceller.close()


async def settled(*cancels: asyncio.Future[None]) -> None:
    """Let the loop run a few turns, until every one of ``cancels`` is done."""
    for _ in range(10):
        if all(cancel.done() for cancel in cancels):
            return
        await asyncio.sleep(0)


async def test_concurrent_cancels_of_a_task_share_one_broadcast(canceller: HeldBroadcasts) -> None:
    first = asyncio.ensure_future(canceller.revoke(A, first=True))
    await canceller.broadcasts_out(1)
    again = asyncio.ensure_future(canceller.revoke(A, first=False))  # recorded by the first
    await asyncio.sleep(0)
    assert not again.done()  # it waits for the revoke out, not for nothing
    canceller.gates[0].set_result(None)
    await settled(first, again)
    assert first.result() is None and again.result() is None
    assert canceller.sent == [[A]]


async def test_a_cancel_recorded_before_needs_no_broadcast(canceller: HeldBroadcasts) -> None:
    cancel = asyncio.ensure_future(canceller.revoke(A, first=False))
    await settled(cancel)
    assert cancel.done() and cancel.result() is None
    assert canceller.sent == []


async def test_cancels_made_while_a_broadcast_is_out_go_together_in_the_next(
    canceller: HeldBroadcasts,
) -> None:
    first = asyncio.ensure_future(canceller.revoke(A, first=True))
    await canceller.broadcasts_out(1)
    later = [asyncio.ensure_future(canceller.revoke(task_id, first=True)) for task_id in (B, C)]
    canceller.gates[0].set_result(None)
    await canceller.broadcasts_out(2)
    assert canceller.sent == [[A], [B, C]]
    await settled(first)
    assert first.done() and not any(cancel.done() for cancel in later)
    canceller.gates[1].set_result(None)
    await settled(*later)
    assert all(cancel.done() and cancel.result() is None for cancel in later)

    # A cancel after the broadcasts ended starts them again.
    last = asyncio.ensure_future(canceller.revoke(D, first=True))
    await canceller.broadcasts_out(3)
    canceller.gates[2].set_result(None)
    await settled(last)
    assert last.done() and canceller.sent == [[A], [B, C], [D]]


async def test_a_failed_broadcast_fails_its_own_cancels_and_the_next_is_still_sent(
    canceller: HeldBroadcasts,
) -> None:
    failing = asyncio.ensure_future(canceller.revoke(A, first=True))
    await canceller.broadcasts_out(1)
    next_one = asyncio.ensure_future(canceller.revoke(B, first=True))
    canceller.gates[0].set_exception(ConnectionError("broker gone"))
    await settled(failing)
    assert failing.done() and isinstance(failing.exception(), ConnectionError)
    await canceller.broadcasts_out(2)
    assert canceller.sent == [[A], [B]]
    canceller.gates[1].set_result(None)
    await settled(next_one)
    assert next_one.done() and next_one.result() is None


async def test_a_cancel_that_stops_waiting_leaves_the_others_of_its_task_their_answer(
    canceller: HeldBroadcasts,
) -> None:
    leaving = asyncio.ensure_future(canceller.revoke(A, first=True))
    staying = asyncio.ensure_future(canceller.revoke(A, first=False))
    await canceller.broadcasts_out(1)
    leaving.cancel()  # its connection closed
    await asyncio.gather(leaving, return_exceptions=True)
    canceller.gates[0].set_result(None)
    await settled(staying)
    assert staying.done() and not staying.cancelled() and staying.result() is None


async def test_a_failed_broadcast_nobody_waits_for_any_more_is_not_logged_as_unretrieved(
    canceller: HeldBroadcasts, loop_errors: list[dict[str, Any]]
) -> None:
    leaving = asyncio.ensure_future(canceller.revoke(A, first=True))
    await canceller.broadcasts_out(1)
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    canceller.gates[0].set_exception(ConnectionError("broker gone"))
    for _ in range(3):
        await asyncio.sleep(0)
    del leaving  # its traceback holds the revoke's future
    gc.collect()  # an exception never retrieved is reported when its future is collected
    assert loop_errors == []
