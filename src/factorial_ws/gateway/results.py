"""Waiting for task results: one Redis pub/sub connection per gateway process serves every task.

Celery's Redis result backend stores each result under ``celery-task-meta-<id>``; the workers'
backend (``result_backend``) also publishes a note on ``factorial-ws:done:<id>``: the meta itself
when it is small, its size when it is large (a large result is then read once per process, see
``big_results``). A waiting task costs a dict entry and a future: the hub SUBSCRIBEs to its note
channel, and the reader task resolves the future when the note arrives.

Races closed here:
- A result published before the SUBSCRIBE took effect is missed by pub/sub, so ``watch`` returns
  only once Redis has confirmed the subscription; callers then send the task, or read the key
  once (``snapshot``) for a task that may already be done.
- Confirmations arrive in command order; a channel subscribed, dropped and subscribed again counts
  the confirmations it still awaits, so an old one cannot pass for the new.
- After the connection is lost, the hub reconnects, subscribes to every channel still waited for,
  and reads their keys once, delivering whatever was stored while it was away. It does so in
  batches, so that ten thousand waiting tasks do not hold the event loop.

A watch made with ``progress`` also hears when a worker starts the task (Celery's STARTED state,
which workers store, and so note, only for tasks sent with progress). Since each process that
waits for a task is subscribed to its note channel, Redis' count of the channel's subscribers
tells how many gateway processes wait for it (``waiters_elsewhere``): what a cancel asks before
it stops a task.

A catalog task (``catalog_task``) runs on the user's stock Celery workers, which know nothing of
our note channel: its watches listen on Celery's own channel, ``celery-task-meta-<id>``, where
the backend publishes every state it stores, the task's own states (``Progress``) included.

Reads of a task's stored state are ``stored_tasks``'; the meta is parsed by ``worker.stored_meta``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import operator
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.utils import str_if_bytes

from ..catalog import Catalog
from ..constants import NOTE_CHANNEL_PREFIX, RESULT_KEY_PREFIX, RESULTS_IDLE_CHANNEL
from ..protocol import Pending, Progress, Started
from ..worker.result_backend import note_channel
from ..worker.stored_meta import Ending
from .backoff import Backoff
from .progress import Latest
from .stored_tasks import ServiceUnavailable, StoredTasks, read_notes, result_key

logger = logging.getLogger(__name__)

_CONFIRM_TIMEOUT_S = 5.0
_LINGER_S = 0.1  # how long a channel of an ended task stays subscribed (_unsubscribe_later)
# Channels per SUBSCRIBE (and keys per MGET) when the hub subscribes to every waiting task
# again, and messages handled in a row before the reader lets other work run.
_BATCH_SIZE = 250
_MESSAGES_PER_TURN = 100


def channel_of(task_id: str, catalog: bool) -> str:
    """Where a task's states are announced: our note channel for factorial, Celery's own (the
    meta's key) for a catalog task run by a stock worker."""
    return result_key(task_id) if catalog else note_channel(task_id)


def _task_id_of(channel_name: str) -> str:
    return channel_name.removeprefix(NOTE_CHANNEL_PREFIX).removeprefix(RESULT_KEY_PREFIX)


@dataclass(eq=False)
class Watch:
    """One waiter's view of one task: ``outcome`` resolves when the task ends; ``started``, of a
    watch made with progress, when a worker starts it."""

    task_id: str
    outcome: asyncio.Future[Ending] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    started: asyncio.Future[None] | None = None
    catalog_task: str | None = None  # a catalog task's name: Celery's channel, any JSON result
    progress: Latest[Progress] | None = None  # a catalog task's own states, with progress


@dataclass(eq=False)
class _Channel:
    watches: set[Watch] = field(default_factory=set)
    # True once Redis confirmed the subscription, False when the connection went first. Not an
    # exception: a reconnection attempt during an outage fails every channel's future, and an
    # exception nobody awaits would be logged ("Future exception was never retrieved").
    subscribed: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ended: bool = False  # its task's outcome came: nobody can cancel the task any more
    catalog_task: str | None = None  # read its notes as this catalog task's metas


class ResultHub:
    def __init__(
        self,
        client: aioredis.Redis,
        pubsub_client: aioredis.Redis,
        *,
        catalog: Catalog | None = None,
        task_error_messages: bool = False,
    ) -> None:
        self._client = client  # pooled commands: GET, MGET
        catalog = Catalog() if catalog is None else catalog
        self.stored = StoredTasks(client, catalog=catalog, task_error_messages=task_error_messages)
        self._pubsub_client = pubsub_client  # no retries of its own: the hub reconnects
        self._channels: dict[str, _Channel] = {}
        self._unconfirmed: Counter[str] = Counter()
        self._pubsub: PubSub | None = None
        self._connected = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._read_since_pause = 0
        self._lost = False  # the subscription was lost and is not back yet
        self._backoff = Backoff()  # between reconnection attempts
        # SUBSCRIBE and UNSUBSCRIBE of one event-loop turn go as one command each (batching.py
        # says why), in the order they were asked for, by one sender at a time.
        self._commands: list[tuple[str, str]] = []
        self._lingering: list[str] = []  # channels of ended tasks, unsubscribed in a while
        self._flush_scheduled = False
        self._sending = asyncio.Lock()
        self._senders: set[asyncio.Task[None]] = set()

    # --- lifecycle ---

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._run(), name="result-hub")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for sender in list(self._senders):
            sender.cancel()
        await self.stored.close()
        await self._drop_pubsub()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        return self.connected

    @property
    def waiting(self) -> int:
        """Number of tasks waited for (for metrics)."""
        return len(self._channels)

    # --- waiting ---

    async def subscribe(
        self,
        task_id: str,
        *,
        progress: bool = False,
        catalog_task: str | None = None,
    ) -> Watch:
        """Start waiting for a task; returns once Redis has confirmed the subscription, so a
        result stored from then on cannot be missed. Pair with ``release``. ``catalog_task``:
        the name of a catalog task (None: factorial)."""
        if not self.connected:
            await self._backoff.attempt_now()
        if not self.connected:
            raise ServiceUnavailable
        watch = Watch(task_id, catalog_task=catalog_task)
        if progress:
            watch.started = asyncio.get_running_loop().create_future()
            watch.progress = None if catalog_task is None else Latest()
        channel_name = channel_of(task_id, catalog_task is not None)
        channel = self._channels.get(channel_name)
        if channel is None:
            channel = self._channels[channel_name] = _Channel(catalog_task=catalog_task)
            self._queue("subscribe", channel_name)
        channel.watches.add(watch)
        try:
            # False when no confirmation came within _CONFIRM_TIMEOUT_S (_send_commands).
            confirmed = await asyncio.shield(channel.subscribed)
        except BaseException:
            await self.release(watch)
            raise
        if not confirmed:
            await self.release(watch)
            raise ServiceUnavailable
        return watch

    async def release(self, watch: Watch) -> None:
        """Stop waiting; the last waiter of a channel unsubscribes from it."""
        channel_name = channel_of(watch.task_id, watch.catalog_task is not None)
        channel = self._channels.get(channel_name)
        if channel is None:
            return
        channel.watches.discard(watch)
        if channel.watches:
            return
        del self._channels[channel_name]
        if channel.ended:
            self._unsubscribe_later(channel_name)
        else:
            self._queue("unsubscribe", channel_name)

    def _unsubscribe_later(self, channel_name: str) -> None:
        """UNSUBSCRIBE from the channel of a task that ended within _LINGER_S, with the others
        of that time: one command and one read of confirmations for many tasks, where a task
        each cost a round of syscalls. Harmless meanwhile: a note on a channel nobody waits for
        is dropped, and a task that ended cannot be cancelled (the one thing a subscriber count
        decides, ``waiters_elsewhere``). A channel watched again meanwhile is not dropped."""
        self._lingering.append(channel_name)
        if len(self._lingering) == 1:
            asyncio.get_running_loop().call_later(_LINGER_S, self._unsubscribe_lingering)

    def _unsubscribe_lingering(self) -> None:
        lingering, self._lingering = self._lingering, []
        for channel_name in lingering:
            if channel_name not in self._channels:
                self._queue("unsubscribe", channel_name)

    # --- a task's stored state (stored_tasks.py), as session.py asks the hub for it ---

    # --- who waits ---

    def local_waiters(self, task_id: str) -> int:
        """Watches of this process on the task."""
        channels = (self._channels.get(channel_of(task_id, catalog)) for catalog in (False, True))
        return sum(len(channel.watches) for channel in channels if channel is not None)

    async def waiters_elsewhere(self, task_id: str) -> int:
        """Other processes subscribed to the task's note channel: gateway processes that wait
        for it. This process, subscribed while it has a watch on the task, is not counted."""
        if not self.connected:
            raise ServiceUnavailable  # our own subscription may not be in Redis' count now
        # Either channel: the kind of the task is not known here, and one of them has nobody.
        names = [channel_of(task_id, catalog) for catalog in (False, True)]
        try:
            counts = await self._client.pubsub_numsub(*names)
        except aioredis.RedisError:
            raise ServiceUnavailable from None
        subscribers = sum(int(count) for _, count in counts)
        return max(0, subscribers - sum(name in self._channels for name in names))

    def _queue(self, command: str, channel_name: str) -> None:
        """SUBSCRIBE or UNSUBSCRIBE on the next turn, with the others of this turn."""
        self._commands.append((command, channel_name))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_commands)

    def _flush_commands(self) -> None:
        self._flush_scheduled = False
        commands, self._commands = self._commands, []
        if self._pubsub is None:
            return  # not connected: _connect subscribes to every channel still waited for
        sender = asyncio.create_task(self._send_commands(self._pubsub, commands))
        self._senders.add(sender)
        sender.add_done_callback(self._senders.discard)

    async def _send_commands(self, pubsub: PubSub, commands: list[tuple[str, str]]) -> None:
        # One sender at a time (the lock is fair): a later turn's SUBSCRIBE of a channel must
        # not overtake an earlier UNSUBSCRIBE of it.
        async with self._sending:
            for command, group in itertools.groupby(commands, key=operator.itemgetter(0)):
                if pubsub is not self._pubsub:
                    return  # that connection is gone; _connect subscribes anew
                names = [name for _, name in group]
                if command == "subscribe":
                    names = [name for name in names if name in self._channels]  # released meanwhile
                    if not names:
                        continue
                    self._unconfirmed.update(names)
                    channels = [self._channels[name] for name in names]
                    asyncio.get_running_loop().call_later(_CONFIRM_TIMEOUT_S, _give_up, channels)
                try:
                    await getattr(pubsub, command)(*names)
                except (aioredis.RedisError, OSError):
                    # The reader reconnects; meanwhile nobody waits for a confirmation that
                    # cannot come.
                    self._fail_confirmations()
                    return

    def _fail_confirmations(self) -> None:
        """Answer every subscription still awaiting its confirmation with False: the connection
        that would confirm it is gone, and the client must hear so at once."""
        _give_up(self._channels.values())

    # --- the reader ---

    async def _run(self) -> None:
        while True:
            try:
                await self._connect()
                self._backoff.reset()
                await self._read_forever()
            except (aioredis.RedisError, OSError) as exc:
                # One warning when the subscription is lost, however long Redis stays away.
                if self.connected:
                    logger.warning("lost the result subscription: %s; reconnecting", exc)
                    self._lost = True
                self._connected.clear()
                self._fail_confirmations()
                await self._drop_pubsub()
                self._backoff.attempt_ended()
                await self._backoff.sleep()

    async def _connect(self) -> None:
        pubsub = self._pubsub_client.pubsub()
        self._unconfirmed.clear()
        for channel in self._channels.values():
            if channel.subscribed.done():
                channel.subscribed = asyncio.get_running_loop().create_future()
        names = [RESULTS_IDLE_CHANNEL, *self._channels]
        self._pubsub = pubsub  # from now on a released task's channel is unsubscribed here
        # In batches, each confirmed before the next is sent: the loop gets its turn between
        # them, and a subscription drop with many waiting tasks does not freeze the gateway.
        for batch in _batches(names):
            batch = [name for name in batch if name in self._channels or name == RESULTS_IDLE_CHANNEL]
            if not batch:
                continue  # every task of it was released meanwhile
            self._unconfirmed.update(batch)
            await pubsub.subscribe(*batch)
            await self._read_confirmations(pubsub, len(batch))
        self._connected.set()
        self._backoff.attempt_ended()
        if self._lost:
            self._lost = False
            logger.info("result subscription restored; checking %d waiting tasks", len(names) - 1)
        await self._catch_up(names[1:])

    async def _read_confirmations(self, pubsub: PubSub, count: int) -> None:
        """Dispatch messages until ``count`` subscriptions are confirmed. Only this SUBSCRIBE's
        confirmations can come: no other SUBSCRIBE is sent while the hub is not connected."""
        while count:
            message = await self._next_message(pubsub)
            if message is not None:
                self._dispatch(message)
                if message["type"] == "subscribe":
                    count -= 1

    async def _catch_up(self, channel_names: list[str]) -> None:
        """Deliver results stored while the subscription was down."""
        for batch in _batches(channel_names):
            notes = await read_notes(self._client, [_task_id_of(name) for name in batch])
            for name, note in zip(batch, notes, strict=True):
                if note is not None:
                    self._deliver(name, note)

    async def _read_forever(self) -> None:
        assert self._pubsub is not None
        while True:
            message = await self._next_message(self._pubsub)
            if message is not None:
                self._dispatch(message)

    async def _next_message(self, pubsub: PubSub) -> dict[str, Any] | None:
        # Messages already buffered are read without a pause; after a burst of them, let the
        # loop run everything else before going on.
        self._read_since_pause += 1
        if self._read_since_pause >= _MESSAGES_PER_TURN:
            self._read_since_pause = 0
            await asyncio.sleep(0)
        message: dict[str, Any] | None = await pubsub.get_message(timeout=None)
        return message

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        name = str_if_bytes(message["channel"])
        if kind == "message":
            data = message["data"]
            if isinstance(data, bytes | str):
                self._deliver(name, data)
        elif kind == "subscribe":
            self._confirm(name)

    def _confirm(self, channel_name: str) -> None:
        self._unconfirmed[channel_name] -= 1
        if self._unconfirmed[channel_name] > 0:
            return  # an older SUBSCRIBE's confirmation; the newest is still on its way
        del self._unconfirmed[channel_name]
        channel = self._channels.get(channel_name)
        if channel is not None and not channel.subscribed.done():
            channel.subscribed.set_result(True)

    def _deliver(self, channel_name: str, note: bytes | str) -> None:
        channel = self._channels.get(channel_name)
        if channel is None:
            return
        outcome = self.stored.note_state(note, channel.catalog_task)
        if isinstance(outcome, Started | Progress):
            # A task's own state also says that it started (and comes after STARTED, if any).
            for watch in channel.watches:
                if watch.started is not None and not watch.started.done():
                    watch.started.set_result(None)
                if isinstance(outcome, Progress) and watch.progress is not None:
                    watch.progress.put(outcome)
            return
        if isinstance(outcome, Pending):
            return
        channel.ended = True
        for watch in channel.watches:
            if not watch.outcome.done():
                watch.outcome.set_result(outcome)

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


def _give_up(channels: Iterable[_Channel]) -> None:
    """No confirmation will come (in time, or at all): those still waiting for one are told
    False."""
    for channel in channels:
        if not channel.subscribed.done():
            channel.subscribed.set_result(False)


def _batches(items: list[str]) -> list[list[str]]:
    return [items[start : start + _BATCH_SIZE] for start in range(0, len(items), _BATCH_SIZE)]
