"""Send tasks to Celery's queues from asyncio, without blocking the event loop.

``Producer`` runs the submission script (``submission.py``) on a task's message
(``messages.py``): in one atomic step it marks the id as known and pushes the message (and, for
``submit``, decides whether a new task is needed at all: see ``Rules``). A request with progress
also learns, in that same step, how many tasks are ahead of a task it creates.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis
from celery import Celery
from redis.exceptions import NoScriptError
from redis.utils import str_if_bytes

from ..constants import (
    KOMBU_UNACKED_KEY,
    NUMBER_KEY_PREFIX,
    QUEUED_COST_KEY_PREFIX,
    QUEUED_COSTS_KEY_PREFIX,
    QUEUED_LEDGER_KEY_PREFIX,
    REPLACES_KEY_PREFIX,
    RESULT_KEY_PREFIX,
    RUNNING_KEY_PREFIX,
    STORED_BYTES_KEY_PREFIX,
    SUBMITTED_KEY_PREFIX,
    WORKER_RUN_KEY_PREFIX,
)
from ..costs import factorial_cost
from ..worker.result_backend import charge_stored_bytes, stored_bucket_s
from .batching import Batcher
from .memory import MemoryGauge
from .messages import Call, CallEnvelopes, Envelopes, call_record, submitted_record
from .submission import REFUSALS, SUBMIT_SCRIPT, Accepted, Refused, Rules, budgets

# The producer's API: its arguments and answers are defined beside what makes them.
__all__ = ["REPLICA_ACK_TIMEOUT_MS", "Accepted", "Call", "NotReplicated", "Producer", "Refused", "Rules"]

# How long a task waits for its replicas before the client is told "Service unavailable".
REPLICA_ACK_TIMEOUT_MS = 1000


_ScriptCall = tuple[tuple[str, ...], tuple[bytes | str | int | float, ...]]  # one script call's keys, args


class NotReplicated(aioredis.RedisError):
    """Fewer replicas than required confirmed the task in time: a failover could lose it."""


class Producer:
    """Publishes tasks and records that their ids exist (so a lookup can tell "queued" from
    "never heard of": Celery reports both as PENDING).

    ``submit`` follows ``rules``: it reuses the task of the same number (n! is a pure function);
    else it refuses a new task that ``memory`` refuses (Redis past its high water), or when the
    hard queue's budget or the client address's is spent (in cost: the digits of n!, costs.py),
    or when the address stored too many result bytes; and it sends tasks that expire unrun. What
    an address has queued and stored is kept in Redis, so it is counted over all its
    connections, closed ones included, on every gateway of that Redis; a task counts until a
    worker takes it out of the queue. ``send`` always sends a new task.

    With ``min_replicas_ack``, a new task is acknowledged only once that many replicas hold it
    (Redis ``WAIT``), so a task whose client got its ack survives the loss of the master.
    """

    def __init__(
        self,
        app: Celery,
        client: aioredis.Redis,
        result_expires_s: int,
        *,
        min_replicas_ack: int = 0,
        rules: Rules = Rules(),
        memory: MemoryGauge | None = None,
    ) -> None:
        self._app = app
        self._client = client
        self._expires_s = result_expires_s
        self._script_sha = hashlib.sha1(SUBMIT_SCRIPT.encode()).hexdigest()
        self._min_replicas_ack = min_replicas_ack
        self._rules = rules
        self._memory = memory
        # The requests of one event-loop turn go to Redis in one pipeline (batching.py).
        self._batcher: Batcher[_ScriptCall, tuple[list[Any], int]] = Batcher(self._run_batch)
        self._charges: Batcher[tuple[str, int], None] = Batcher(self._charge_batch)
        # By TASK_EXPIRES: ``send`` sends tasks without one, ``submit`` by the rules.
        self._envelopes = {expires_s: Envelopes(app, expires_s) for expires_s in {None, rules.task_expires_s}}
        self._call_envelopes = CallEnvelopes(app, rules.task_expires_s)

    async def send(self, task_id: str, queue: str, number: int, *, progress: bool = False) -> int | None:
        """Raises redis.RedisError when Redis cannot take the task, or NotReplicated when too
        few replicas confirmed it (it may still run). Sending the same id again sends nothing:
        the task is pushed at most once, however often this is retried. With ``progress``,
        returns how many tasks were ahead of it: waiting in its queue, or taken by a worker
        (reserved or running) and not finished."""
        accepted = await self._run(task_id, queue, number, "", Rules(), progress, nearly_full=False)
        return accepted.ahead if isinstance(accepted, Accepted) else None

    async def submit(
        self, task_id: str, queue: str, number: int, client_host: str, *, progress: bool = False
    ) -> Accepted | Refused:
        """Queue ``number!`` as ``task_id``, name the task that already computes it, or refuse;
        raises as ``send`` does. With ``progress``, a created task's ``ahead`` is counted."""
        nearly_full = self._nearly_full(queue)
        return await self._run(
            task_id, queue, number, client_host, self._rules, progress, nearly_full=nearly_full
        )

    async def submit_call(
        self, task_id: str, call: Call, client_host: str, *, progress: bool = False
    ) -> Accepted | Refused:
        """``submit`` for a catalog task: queue it as ``task_id``, or name the task of identical
        parameters when its entry shares results."""
        rules = replace(self._rules, reuse=call.share_key is not None)
        nearly_full = self._nearly_full(call.queue)
        return await self._run(
            task_id, call.queue, call, client_host, rules, progress, nearly_full=nearly_full
        )

    def _nearly_full(self, queue: str) -> bool:
        """Whether Redis' memory is past its high water for a new task of ``queue`` (the gauge's
        last reading): the script then creates none, though it still reuses one."""
        return self._memory is not None and self._memory.refuses(queue)

    async def charge_stored(self, client_host: str, size: int) -> None:
        """Charge a catalog task's stored result (``size`` bytes) to the address whose request
        created the task, as the workers' backend charges factorial's: the submission script
        then refuses an address that made Redis store too much (STORED_BYTES_PER_CLIENT)."""
        if not client_host or not self._rules.stored_bytes_per_client:
            return
        await self._charges.call((client_host, size))

    async def _charge_batch(self, charges: list[tuple[str, int]]) -> list[None]:
        """The charges of one event-loop turn in one round trip, summed by address (each was a
        round trip of its own: a third of a catalog request's gateway CPU)."""
        by_address: dict[str, int] = {}
        for address, size in charges:
            by_address[address] = by_address.get(address, 0) + size
        pipe = self._client.pipeline(transaction=False)
        for address, size in by_address.items():
            charge_stored_bytes(pipe, address, size, self._expires_s)
        await pipe.execute()
        return [None] * len(charges)

    async def _run(
        self,
        task_id: str,
        queue: str,
        work: int | Call,
        client_host: str,
        rules: Rules,
        progress: bool,
        *,
        nearly_full: bool,
    ) -> Accepted | Refused:
        # The known-marker expires with the result it stands for: a result is stored after
        # its task was sent, so it always outlives the marker.
        queue_max, address_max = budgets(rules, queue)
        if isinstance(work, Call):
            shared_key, record, cost = work.shared_key, call_record(work), work.cost
            envelope = self._call_envelopes.make(task_id, work, progress, client_host)
        else:
            shared_key, record = NUMBER_KEY_PREFIX + str(work), submitted_record(queue, work)
            envelope = self._envelopes[rules.task_expires_s].make(task_id, queue, work, progress, client_host)
            cost = factorial_cost(work)
        keys = (
            SUBMITTED_KEY_PREFIX + task_id,
            queue,
            shared_key,
            KOMBU_UNACKED_KEY,
            QUEUED_LEDGER_KEY_PREFIX + queue,
            QUEUED_COSTS_KEY_PREFIX + queue,
            QUEUED_COST_KEY_PREFIX + queue,
            STORED_BYTES_KEY_PREFIX + client_host,
        )
        args = (
            task_id,
            record,
            envelope,
            self._expires_s,
            int(rules.reuse),
            rules.pending_at_most_s or self._expires_s,
            RESULT_KEY_PREFIX,
            SUBMITTED_KEY_PREFIX,
            int(progress),
            client_host,
            cost,
            queue_max,
            address_max,
            rules.stored_bytes_per_client if client_host else 0,
            stored_bucket_s(self._expires_s),
            RUNNING_KEY_PREFIX,
            WORKER_RUN_KEY_PREFIX,
            REPLACES_KEY_PREFIX,
            math.ceil(rules.task_expires_s or 0),
            int(nearly_full),
        )
        reply, replicas = await self._batcher.call((keys, args))
        state, accepted_id = str_if_bytes(reply[0]), str_if_bytes(reply[1])
        if state == "created" and replicas < self._min_replicas_ack:
            raise NotReplicated(f"{replicas} of {self._min_replicas_ack} replicas confirmed the task")
        if state in REFUSALS:
            return REFUSALS[state]
        ahead = int(reply[2]) if state == "created" and progress else None
        return Accepted(accepted_id, state, ahead)  # type: ignore[arg-type]

    async def _run_batch(self, calls: list[_ScriptCall]) -> list[tuple[list[Any], int] | BaseException]:
        """The script once per call, in one pipeline; with ``min_replicas_ack``, one WAIT after
        them all (it covers every write before it on the connection). Each call's answer is its
        script's reply and the replicas that confirmed, or the error its script raised."""
        started = time.monotonic()
        replies = await self._pipeline(calls, REPLICA_ACK_TIMEOUT_MS)
        if any(isinstance(reply, NoScriptError) for reply in replies[: len(calls)]):
            # Redis lost its script cache (a restart, a failover): load it, then run the calls
            # again. The script is idempotent, so the calls that ran are not sent twice. The
            # first run's WAIT spent part of the one timeout (0 would mean no timeout).
            await self._client.script_load(SUBMIT_SCRIPT)
            spent_ms = round((time.monotonic() - started) * 1000)
            replies = await self._pipeline(calls, max(1, REPLICA_ACK_TIMEOUT_MS - spent_ms))
        replicas = 0
        if self._min_replicas_ack:
            last = replies[-1]
            if isinstance(last, BaseException):
                raise last
            replicas = int(last)
        return [
            reply if isinstance(reply, BaseException) else (reply, replicas)
            for reply in replies[: len(calls)]
        ]

    async def _pipeline(self, calls: list[_ScriptCall], wait_ms: int) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVALSHA", self._script_sha, len(keys), *keys, *args)
        if self._min_replicas_ack:
            pipe.execute_command("WAIT", self._min_replicas_ack, wait_ms)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies
