"""Who may cancel, and what a cancel costs (issue 17, items 1.4, 1.5 and 1.8): the real gateway,
Redis and Celery workers, clients speaking raw WebSocket frames.

A frozen worker (SIGSTOP) keeps a task queued for as long as a test needs, and keeps its
heartbeat fresh for WORKER_STALE_S, so the gateway still expects its answer to a revoke.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from typing import Any

import pytest

from factorial_ws.constants import (
    HARD_QUEUE,
    TASK_CANCELLED,
    TASK_NOT_YOURS,
    TOO_MANY_IN_FLIGHT,
    WORKERS_KEY_PREFIX,
)
from peers import Client, client
from support import STOP_TIMEOUT_S, UNIT_S, Launcher, paused, redis_client, wait_until, worker_hostname

from .fault_tools import SLOW_NUMBER
from .test_progress_cancel import (
    HardSystem,
    assert_discarded_unrun,
    cancel_own_wait,
    drained,
    idle_hard_system,
    module_hard_system,
    recv_raw,
    replies_until,
    send,
    submit,
)

__all__ = ["idle_hard_system", "module_hard_system"]  # the fixtures, shared with test_progress_cancel


async def look_up(url: str, task_id: str) -> dict[str, Any]:
    """A lookup's final reply (after ``pending`` if the task had not ended)."""
    async with client(url) as ws:
        await ws.send({"type": "result", "task_id": task_id})
        replies = await replies_until(ws, lambda reply: reply["type"] != "pending")
    return replies[-1]


# --- who may cancel (item 1.4) ------------------------------------------------------------------


async def test_after_its_creator_left_nobody_may_revoke_a_computation_and_its_result_stays_for_lookup(
    idle_hard_system: HardSystem,
) -> None:
    _, hard, url = idle_hard_system
    number = 2_999  # a hard task, computed in a blink once its worker runs again
    with paused(hard.pid):  # the task stays queued while others try to cancel it
        async with client(url) as creator:
            task_id = await submit(creator, number, 1)
        # A client that neither created nor waits for it: refused, the task goes on.
        async with client(url) as stranger:
            reply = await stranger.request({"type": "cancel", "task_id": task_id, "id": 5})
            assert reply == {"type": "error", "result": TASK_NOT_YOURS, "task_id": task_id, "id": 5}
        # A joiner (the same number, so the same computation): its cancel ends its own wait only.
        async with client(url) as joiner:
            assert await submit(joiner, number, 7) == task_id
            await cancel_own_wait(joiner, task_id, 7, 8)

    result = await look_up(url, task_id)  # the creator, back later
    assert result["type"] == "success", result
    # The worker logs its success after storing it: the line may come after the lookup's reply.
    wait_until(lambda: f"[{task_id}] succeeded" in hard.log(), what="the worker's success line")
    assert f"Discarding revoked task: factorial_ws.factorial_hard[{task_id}]" not in hard.log()


async def test_a_joiners_cancel_ends_its_wait_and_the_creator_still_gets_the_result(
    idle_hard_system: HardSystem,
) -> None:
    _, _, url = idle_hard_system
    async with client(url) as creator, client(url) as joiner:
        task_id = await submit(creator, SLOW_NUMBER, 1)
        assert await submit(joiner, SLOW_NUMBER, 3) == task_id
        await cancel_own_wait(joiner, task_id, 3, 4)
        result = await recv_raw(creator, 60 * UNIT_S)

    assert result["type"] == "success" and result["task_id"] == task_id and result["id"] == 1


# --- a cancel flood with a frozen worker (item 1.5) ---------------------------------------------

# Five connections of 256 requests in flight each (WS_MAX_TASKS_IN_FLIGHT): more cancels at
# once than a gateway process has admission slots (1024).
FLOOD_CONNECTIONS = 5
CANCELS_EACH = 256


async def flood(ws: Client, task_id: str) -> None:
    for request_id in range(100, 100 + CANCELS_EACH):
        await send(ws, request_id, type="cancel", task_id=task_id)


async def flood_replies(ws: Client) -> list[dict[str, Any]]:
    """The replies to one connection's flood: its own wait's end, then one per cancel."""
    return [await recv_raw(ws, 60 * UNIT_S) for _ in range(CANCELS_EACH + 1)]


# It times the system (a lookup's latency during a flood): run alone, not beside other tests.
@pytest.mark.alone
async def test_a_cancel_flood_with_a_frozen_worker_revokes_each_task_once_and_lookups_stay_fast(
    launch: Launcher, idle_hard_system: HardSystem
) -> None:
    redis_url, hard, _ = idle_hard_system
    _, url = launch.gateway(redis_url)  # a process: its log is read, and the flood is timed
    async with client(url) as ws:
        stored = await submit(ws, 3_000, 1)
        assert (await recv_raw(ws, 30 * UNIT_S))["type"] == "success"

    lookups_s: list[float] = []
    with paused(hard.pid):  # its heartbeat stays fresh: the gateway expects its answers
        async with contextlib.AsyncExitStack() as stack:
            flooders = [await stack.enter_async_context(client(url)) for _ in range(FLOOD_CONNECTIONS)]
            # Each connection floods cancels of the task it created: the one it may revoke.
            task_ids = [await submit(ws, 4_000 + index, 1) for index, ws in enumerate(flooders)]
            await asyncio.gather(*map(flood, flooders, task_ids))
            replies = asyncio.gather(*(flood_replies(ws) for ws in flooders))
            for _ in range(3):
                started = time.monotonic()
                found = await look_up(url, stored)
                lookups_s.append(time.monotonic() - started)
                assert found["type"] == "success", found
            print(f"lookups during the flood: {[round(s, 3) for s in lookups_s]} s")
            assert max(lookups_s) < 1.0 * UNIT_S, lookups_s
            every_reply = await replies

    for task_id, answers in zip(task_ids, every_reply, strict=True):
        kinds = {(reply["type"], reply.get("result")) for reply in answers}
        assert kinds <= {("error", TASK_CANCELLED), ("cancelled", None), ("error", TOO_MANY_IN_FLIGHT)}, kinds
        assert all(reply["task_id"] == task_id for reply in answers if "task_id" in reply)
    # One broadcast per task: the gateway logs each one that the frozen worker left unanswered.
    unanswered = re.findall(r"revoke of (.*): no answer", (launch.log_dir / "gateway.log").read_text())
    for task_id in task_ids:
        assert sum(task_id in line for line in unanswered) == 1, (task_id, unanswered)
    # Continued, the worker drops every one of them unrun.
    wait_until(
        lambda: all(f"factorial_hard[{task_id}]" in hard.log() for task_id in task_ids), what="discards"
    )
    for task_id in task_ids:
        assert_discarded_unrun(hard, task_id)


# --- what a submit-and-cancel cycle leaves in Redis (item 1.8) ---------------------------------

CYCLES = 40


def stored_bytes(redis_url: str) -> tuple[int, dict[str, int]]:
    """Every key's MEMORY USAGE, summed; and by kind (the key without its task id or number)."""
    by_kind: dict[str, int] = {}
    with redis_client(redis_url) as redis:
        for key in redis.scan_iter(count=1000):
            size = redis.memory_usage(key, samples=0) or 0
            kind = re.sub(r"[0-9a-f-]{36}$|\d+$", "*", key.decode())
            by_kind[kind] = by_kind.get(kind, 0) + size
    return sum(by_kind.values()), by_kind


async def submit_and_cancel(ws: Client, number: int, request_id: int) -> None:
    task_id = await submit(ws, number, request_id)
    await cancel_own_wait(ws, task_id, request_id, request_id + 1)


async def test_a_submit_and_cancel_cycle_leaves_little_in_redis_and_nothing_past_task_expires(
    launch: Launcher,
) -> None:
    # TASK_EXPIRES: past it, no worker may start the task anyway. Long enough for the hard worker
    # to start and discard every cancelled task while its cancel is remembered: one taken later
    # keeps its REVOKED state for RESULT_EXPIRES (docs/security.md says so).
    expires_s = 12 * UNIT_S  # a worker starts in 2-4 s
    redis_url = launch.redis().url
    launch.worker(redis_url, queues="soft", concurrency=1, TASK_EXPIRES=expires_s)
    url = launch.in_process_gateway(redis_url, TASK_EXPIRES=expires_s)  # neither logs nor metrics read
    # No hard worker while the cycles run: their tasks stay queued, cancelled, until one comes
    # and discards them.
    async with client(url) as ws:
        await submit_and_cancel(ws, 5_000, 1)  # the keys every cycle shares exist from now on
        hard = launch.worker(redis_url, queues="hard", concurrency=1, name="hard", TASK_EXPIRES=expires_s)
        drained(redis_url)
        # Killed: it holds no task, so a warm stop would store nothing more, and takes seconds.
        hard.signal(signal.SIGKILL)
        hard.process.wait(STOP_TIMEOUT_S)
        before, _ = stored_bytes(redis_url)
        # Killed, it keeps a fresh heartbeat for WORKER_STALE_S, and each cancel meanwhile would
        # wait REVOKE_REPLY_TIMEOUT_S for its answer (14 s of this test): it goes now. The worker
        # started again below has its name, so the heartbeats take as many bytes as before.
        with redis_client(redis_url) as redis:
            assert redis.zrem(WORKERS_KEY_PREFIX + HARD_QUEUE, worker_hostname(hard.name)) == 1
        for index in range(CYCLES):
            await submit_and_cancel(ws, 5_001 + index, 10 + 2 * index)
    launch.worker(redis_url, queues="hard", concurrency=1, name="hard", TASK_EXPIRES=expires_s)
    drained(redis_url)
    after, by_kind = stored_bytes(redis_url)
    # What stays past TASK_EXPIRES (given 2 s more): measured as soon as it is little enough,
    # or at that deadline.
    with contextlib.suppress(TimeoutError):
        wait_until(
            lambda: stored_bytes(redis_url)[0] - before <= 16 * CYCLES,
            expires_s + 2 * UNIT_S,
            "what the cycles left to expire",
        )
    later, by_kind_later = stored_bytes(redis_url)

    per_cycle, per_cycle_later = (after - before) / CYCLES, (later - before) / CYCLES
    print(f"bytes per cycle: {per_cycle:.0f}, after TASK_EXPIRES: {per_cycle_later:.0f}")
    print(f"by kind: {by_kind}\nafter TASK_EXPIRES: {by_kind_later}")
    assert per_cycle <= 1024, by_kind
    assert per_cycle_later <= 16, by_kind_later
