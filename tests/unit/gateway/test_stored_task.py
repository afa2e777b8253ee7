"""StoredTask's sequences (gateway/task.py) against a hub and a canceller that answer as told:
a cancel follows the ledger's rule, records and revokes only when it may, says how the task
ended; a watch set up after the task ended or started still hears it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from factorial_ws.gateway.admission import Admission
from factorial_ws.gateway.cancel import CancelAction, Canceller
from factorial_ws.gateway.conversation import TaskLedger
from factorial_ws.gateway.producer import Producer
from factorial_ws.gateway.results import ResultHub, Watch
from factorial_ws.gateway.stored_tasks import Snapshot, Unknown
from factorial_ws.gateway.task import StoredTask
from factorial_ws.protocol import Failure, Pending, Started, Success

TASK_ID = "8d5df9bd-922a-465d-a26b-c00df06a59ae"
CANCELLED = Failure("Task cancelled")


@dataclass
class FakeHub:
    """The task's states in turn (the last one stays), and its waiters."""

    states: list[Snapshot]
    local: int = 0  # watches of this process on the task
    elsewhere: int = 0
    asked_elsewhere: int = 0
    released: list[Watch] = field(default_factory=list)

    @property
    def stored(self) -> FakeHub:  # the hub's stored reads (StoredTasks), answered here too
        return self

    async def snapshot(self, task_id: str) -> Snapshot:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    async def look(self, task_id: str) -> tuple[Snapshot, str | None]:
        return await self.snapshot(task_id), None

    async def subscribe(
        self, task_id: str, *, progress: bool = False, catalog_task: str | None = None
    ) -> Watch:
        watch = Watch(task_id, catalog_task=catalog_task)
        if progress:
            watch.started = watch.outcome.get_loop().create_future()
        return watch

    async def release(self, watch: Watch) -> None:
        self.released.append(watch)

    def local_waiters(self, task_id: str) -> int:
        return self.local

    async def waiters_elsewhere(self, task_id: str) -> int:
        self.asked_elsewhere += 1
        return self.elsewhere


@dataclass
class FakeCanceller:
    """What the cancel asked for; a revoke that a live worker answers ends the task."""

    hub: FakeHub
    ends_as: Snapshot | None = CANCELLED  # None: no live worker marked it
    calls: list[str] = field(default_factory=list)

    async def record(self, task_id: str) -> bool:
        self.calls.append("record")
        return True

    async def revoke(self, task_id: str, *, first: bool) -> None:
        self.calls.append(f"revoke first={first}")
        if self.ends_as is not None:
            self.hub.states = [self.ends_as]

    async def mark_revoked(self, task_id: str) -> None:
        self.calls.append("mark_revoked")
        self.hub.states = [CANCELLED]


def _task(hub: FakeHub, canceller: FakeCanceller | None = None) -> StoredTask:
    canceller = canceller or FakeCanceller(hub)
    return StoredTask(TASK_ID, cast(ResultHub, hub), cast(Producer, None), cast(Canceller, canceller))


def _ledger(*, created: bool = False, waiting: int = 0, sending: int = 0) -> TaskLedger[str]:
    ledger: TaskLedger[str] = TaskLedger()
    if created:
        ledger.created(TASK_ID)
    for index in range(waiting + sending):
        ledger.add_waiting(TASK_ID, f"waiter {index}", index).sending_outcome = index >= waiting
    ledger.cancel_began(TASK_ID)
    return ledger


async def _take_back(task: StoredTask, ledger: TaskLedger[Any]) -> Snapshot | CancelAction:
    return await task.take_back(ledger, Admission(1, wait_s=1.0))


@pytest.mark.parametrize("state", [Success("120"), CANCELLED, Failure("Task failed")])
async def test_a_cancel_of_an_ended_task_records_nothing_and_gives_how_it_ended(state: Snapshot) -> None:
    hub = FakeHub([state])
    canceller = FakeCanceller(hub)
    assert await _take_back(_task(hub, canceller), _ledger(created=True)) == state
    assert canceller.calls == []


async def test_a_cancel_of_an_unknown_task_records_nothing() -> None:
    hub = FakeHub([Unknown()])
    canceller = FakeCanceller(hub)
    assert isinstance(await _take_back(_task(hub, canceller), _ledger(created=True)), Unknown)
    assert canceller.calls == []


async def test_the_creator_revokes_a_task_nobody_else_waits_for_and_is_creator_no_more() -> None:
    hub = FakeHub([Pending()], local=1)  # its own request's watch
    canceller = FakeCanceller(hub)
    ledger = _ledger(created=True, waiting=1)
    assert await _take_back(_task(hub, canceller), ledger) == CANCELLED
    assert canceller.calls == ["record", "revoke first=True"]
    assert not ledger.facts(TASK_ID).created


async def test_a_revoke_no_live_worker_marked_is_marked_by_the_gateway() -> None:
    hub = FakeHub([Started()])
    canceller = FakeCanceller(hub, ends_as=None)
    assert await _take_back(_task(hub, canceller), _ledger(created=True)) == CANCELLED
    assert canceller.calls == ["record", "revoke first=True", "mark_revoked"]


async def test_a_task_that_ends_during_the_revoke_answers_with_its_outcome() -> None:
    hub = FakeHub([Pending()])
    canceller = FakeCanceller(hub, ends_as=Success("120"))
    assert await _take_back(_task(hub, canceller), _ledger(created=True)) == Success("120")
    assert "mark_revoked" not in canceller.calls


async def test_a_request_of_this_process_sending_its_outcome_counts_as_another_waiter() -> None:
    # Its outcome is in: it no longer waits, so the hub's watch on the task is someone else's.
    hub = FakeHub([Pending()], local=2)
    canceller = FakeCanceller(hub)
    ledger = _ledger(created=True, waiting=1, sending=1)
    assert await _take_back(_task(hub, canceller), ledger) == Pending()  # END_OWN_WAITS
    assert canceller.calls == []


async def test_the_creator_with_nothing_to_end_is_refused_while_another_gateway_waits() -> None:
    hub = FakeHub([Pending()], elsewhere=1)
    canceller = FakeCanceller(hub)
    assert await _take_back(_task(hub, canceller), _ledger(created=True)) is CancelAction.OTHERS_WAIT
    assert canceller.calls == []


async def test_a_joiner_ends_its_waits_without_asking_who_else_waits() -> None:
    hub = FakeHub([Started()], local=1)
    canceller = FakeCanceller(hub)
    assert await _take_back(_task(hub, canceller), _ledger(waiting=1)) == Started()
    assert (canceller.calls, hub.asked_elsewhere) == ([], 0)


async def test_a_stranger_is_refused() -> None:
    hub = FakeHub([Pending()])
    assert await _take_back(_task(hub), _ledger()) is CancelAction.NOT_YOURS


async def test_a_watch_on_a_task_that_ended_before_the_subscribe_has_its_outcome() -> None:
    hub = FakeHub([Success("120")])
    watch = await _task(hub).watch(progress=False)
    assert watch.outcome.result() == Success("120")


async def test_a_watch_with_progress_on_a_started_task_hears_started_at_once() -> None:
    hub = FakeHub([Started()])
    watch = await _task(hub).watch(progress=True)
    assert watch.started is not None and watch.started.done() and not watch.outcome.done()


async def test_a_lookup_that_races_the_end_gets_the_outcome_and_releases_its_watch() -> None:
    hub = FakeHub([Pending(), Success("120")])  # running when looked at, ended at the re-read
    assert await _task(hub).outcome_or_watch(progress=False) == Success("120")
    assert len(hub.released) == 1


async def test_a_lookup_of_a_running_task_gets_a_watch() -> None:
    hub = FakeHub([Pending()])
    found = await _task(hub).outcome_or_watch(progress=False)
    assert isinstance(found, Watch) and hub.released == []
