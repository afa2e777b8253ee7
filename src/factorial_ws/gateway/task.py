"""One task's stored state, as one noun (arq's ``Job``): ``StoredTask``.

Its verbs are the Redis race sequences a session needs, each ordered so that no state a worker
stores can go unseen: send the task or reuse the one that computes it (``enqueue``), wait for it
(``watch``), its outcome or else a watch (``outcome_or_watch``), and a connection's cancel
(``take_back``: the rule decides, then record, revoke, read how it ended). It is built on the
process's result hub (subscriptions and reads), producer (the Lua step that sends) and canceller
(the revokes); the decisions it follows are conversation.py's, the replies the session's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from ..protocol import Failure, Pending, Returned, Started, Success
from ..worker.stored_meta import Ending, Stored
from .admission import Admission
from .cancel import CancelAction, Canceller
from .conversation import TaskLedger
from .producer import Accepted, Call, Producer, Refused
from .results import ResultHub, Watch
from .stored_tasks import ServiceUnavailable, Snapshot, Unknown


@dataclass(frozen=True)
class StoredTask:
    """The task ``task_id``, as Redis holds it."""

    task_id: str
    hub: ResultHub
    producer: Producer
    canceller: Canceller

    async def status(self) -> Snapshot:
        """Where the task is now: queued, started, ended, or Unknown (never sent, or expired)."""
        return await self.hub.stored.snapshot(self.task_id)

    # --- sending ---

    async def enqueue(
        self, queue: str, work: int | Call, client_host: str, *, progress: bool, shared: bool
    ) -> tuple[Accepted, Watch] | Refused:
        """Send ``number!`` (or a catalog task's call) as this task, or, when ``shared``, find
        the task that already computes it (the producer's rules may also refuse); with a watch
        on the task that answers. Raises ServiceUnavailable when Redis cannot answer."""
        try:
            if shared:
                # The answer may be a task that exists, even one that ended: watched afterwards,
                # and read once (watch), which also covers a new task that ends before the
                # SUBSCRIBE. A process already subscribed to that task needs no round trip.
                accepted = await self._produce(queue, work, client_host, progress)
                if isinstance(accepted, Refused):
                    return accepted
                other = StoredTask(accepted.task_id, self.hub, self.producer, self.canceller)
                return accepted, await other.watch(progress, _catalog_task(work))
            return await self._send_new(queue, work, client_host, progress)
        except (aioredis.RedisError, OSError):
            raise ServiceUnavailable from None

    async def _produce(
        self, queue: str, work: int | Call, client_host: str, progress: bool
    ) -> Accepted | Refused:
        if isinstance(work, Call):
            return await self.producer.submit_call(self.task_id, work, client_host, progress=progress)
        return await self.producer.submit(self.task_id, queue, work, client_host, progress=progress)

    async def _send_new(
        self, queue: str, work: int | Call, client_host: str, progress: bool
    ) -> tuple[Accepted, Watch] | Refused:
        """Every task is new: subscribed before it is sent, its result cannot be published unseen."""
        watch = await self.hub.subscribe(self.task_id, progress=progress, catalog_task=_catalog_task(work))
        try:
            accepted = await self._produce(queue, work, client_host, progress)
        except BaseException:
            await self.hub.release(watch)
            raise
        if isinstance(accepted, Refused):
            await self.hub.release(watch)
            return accepted
        return accepted, watch

    # --- waiting ---

    async def watch(self, progress: bool, catalog_task: str | None = None) -> Watch:
        """Wait for a task that may have ended (or started) already: subscribe, then read it
        once, now that the subscription is in force. Pair with ``hub.release``."""
        watch = await self.hub.subscribe(self.task_id, progress=progress, catalog_task=catalog_task)
        try:
            snapshot = await self.status()
        except BaseException:
            await self.hub.release(watch)
            raise
        if isinstance(snapshot, Success | Returned | Failure | Stored) and not watch.outcome.done():
            watch.outcome.set_result(snapshot)
        if isinstance(snapshot, Started) and watch.started is not None and not watch.started.done():
            watch.started.set_result(None)  # started before we subscribed: say so at once
        return watch

    async def outcome_or_watch(self, progress: bool) -> Ending | Unknown | Watch:
        """The task's outcome if it has one (Unknown if no such task), else a watch on it."""
        snapshot, catalog_task = await self.hub.stored.look(self.task_id)
        if not isinstance(snapshot, Pending | Started):
            return snapshot
        # It may end between that read and the SUBSCRIBE: watch reads it again.
        watch = await self.watch(progress, catalog_task)
        if watch.outcome.done():
            await self.hub.release(watch)
            return watch.outcome.result()
        return watch

    # --- cancelling ---

    async def take_back(self, ledger: TaskLedger[Any], admission: Admission) -> Snapshot | CancelAction:
        """A connection's cancel, as its ``ledger`` decides (``CancelFacts.action``): the
        refusing CancelAction, or the task's state afterwards (Unknown: no such task; an
        outcome if it had ended first; else it is cancelled, or runs on for others)."""
        async with admission.turn():
            snapshot = await self.status()
            if not isinstance(snapshot, Pending | Started):
                return snapshot
            facts = ledger.facts(self.task_id)
            # Asked of the creator only: anyone else's cancel never revokes.
            others_wait = facts.created and await self.others_wait(facts.still_waiting)
            action = facts.action(others_wait=others_wait)
            if action is not CancelAction.REVOKE:
                return snapshot if action.refusal is None else action
            first = await self.canceller.record(self.task_id)
        # Out of the admission slot: workers may take seconds to answer, others need it.
        snapshot = await self._revoke(first)
        ledger.revoked(self.task_id)
        return snapshot

    async def others_wait(self, own_waiting: int) -> bool:
        """Whether requests other than the ``own_waiting`` ones of the asking connection wait
        for the task, in this process or in any other gateway process of this Redis."""
        return (
            self.hub.local_waiters(self.task_id) > own_waiting
            or await self.hub.waiters_elsewhere(self.task_id) > 0
        )

    async def _revoke(self, first: bool) -> Snapshot:
        """Stop the task whose cancel was recorded (``first``: by this cancel); how it ended (a
        result if it ended first)."""
        await self.canceller.revoke(self.task_id, first=first)
        snapshot = await self.status()
        if isinstance(snapshot, Pending | Started):
            # No live worker marked it (none runs, or none answered): it will never run, since
            # every worker drops it when it comes. Say so to lookups and waiters now.
            await self.canceller.mark_revoked(self.task_id)
            snapshot = await self.status()
        return snapshot


def _catalog_task(work: int | Call) -> str | None:
    return work.name if isinstance(work, Call) else None
