"""Send factorial tasks to Celery's queues from asyncio, without blocking the event loop.

Celery's own ``apply_async`` is synchronous I/O. Instead, Celery builds the task message (its
protocol 2 headers and body) and this module wraps it in the envelope kombu's Redis transport
uses, then pushes it with ``redis.asyncio`` in the same atomic step that marks the id as known
(and, for ``submit``, decides whether a new task is needed at all: see ``Rules``).
The envelope names the anonymous exchange, which kombu routes to the queue named by the routing
key; that is also where a redelivered (restored) message goes.

A request with progress also learns, in that same step, how many tasks are ahead of a task it
creates.

A catalog task (``Call``) goes the same way: its message is the one ``apply_async`` would send
for the task its entry names, with the parameters as keyword arguments, on the entry's queue;
identical requests of an entry that shares results share a task by their parameters (``share_key``)
as factorials do by their number.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import socket
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import redis.asyncio as aioredis
from celery import Celery
from celery.app.amqp import task_message
from redis.exceptions import NoScriptError

from ..config import Config
from ..constants import (
    CLIENT_BUSY,
    CLIENT_HEADER,
    CLIENT_STORED_TOO_MUCH,
    HARD_QUEUE,
    HARD_QUEUE_FULL,
    KOMBU_UNACKED_KEY,
    NUMBER_KEY_PREFIX,
    PROGRESS_HEADER,
    QUEUED_COST_KEY_PREFIX,
    QUEUED_COSTS_KEY_PREFIX,
    QUEUED_LEDGER_KEY_PREFIX,
    REPLACES_KEY_PREFIX,
    RESULT_KEY_PREFIX,
    RUNNING_KEY_PREFIX,
    SHARED_KEY_PREFIX,
    SOFT_QUEUE,
    STORED_BYTES_KEY_PREFIX,
    SUBMITTED_KEY_PREFIX,
    TASK_NAME_BY_QUEUE,
    WORKER_RUN_KEY_PREFIX,
)
from ..costs import factorial_cost
from ..worker.result_backend import charge_stored_bytes, stored_bucket_s
from .batching import Batcher

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..catalog import Entry

_ORIGIN = f"gateway@{socket.gethostname()}"
# How long a task waits for its replicas before the client is told "Service unavailable".
REPLICA_ACK_TIMEOUT_MS = 1000


def task_envelope(
    app: Celery,
    task_id: str,
    queue: str,
    number: int,
    *,
    expires_s: float | None = None,
    progress: bool = False,
    client_host: str = "",
) -> bytes:
    """The bytes kombu's Redis transport would LPUSH for ``task.apply_async((number,))``
    (with ``expires=expires_s``: a worker discards the task once that many seconds have passed;
    with ``progress``, a header that asks the worker to store Celery's STARTED state; and a header
    naming the client address that the stored result is charged to, "" for nobody)."""
    # The reprs are given: Celery's own saferepr of the arguments was a third of this
    # function's cost on the gateway's hot path.
    task = app.tasks[TASK_NAME_BY_QUEUE[queue]]
    message = app.amqp.as_task_v2(
        task_id,
        task.name,
        args=(number,),
        kwargs={},
        origin=_ORIGIN,
        argsrepr=f"({number},)",
        kwargsrepr="{}",
        expires=expires_s,
        # As apply_async does: the worker enforces the message's limits over its own settings.
        time_limit=task.time_limit,
        soft_time_limit=task.soft_time_limit,
    )
    return _envelope(message, queue, progress, client_host)


@dataclass(frozen=True)
class Call:
    """A request for a catalog task, as its entry made it: what to send, where, and what the
    request stands for."""

    name: str  # the catalog entry (the request's type)
    celery_task: str  # the task's registered name
    kwargs: dict[str, Any]  # the validated parameters, as JSON values
    queue: str
    cost: int = 1
    share_key: str | None = None  # identical requests share one task (None: never)
    soft_time_limit_s: float | None = None
    time_limit_s: float | None = None

    @classmethod
    def of(cls, entry: Entry, params: BaseModel) -> Call:
        share_key = entry.share_key(params) if entry.share_results else None
        return cls(
            entry.name,
            entry.task_name(params),
            entry.kwargs(params),
            entry.queue_of(params),
            entry.cost_of(params),
            share_key,
            entry.soft_time_limit_s,
            entry.time_limit_s,
        )

    @property
    def shared_key(self) -> str:
        """The Redis key naming the task of these parameters (the parameters may be long)."""
        digest = hashlib.sha256((self.share_key or "").encode()).hexdigest()
        return SHARED_KEY_PREFIX + digest


def call_envelope(
    app: Celery,
    task_id: str,
    call: Call,
    *,
    expires_s: float | None = None,
    progress: bool = False,
    client_host: str = "",
) -> bytes:
    """The bytes kombu's Redis transport would LPUSH for ``apply_async(kwargs=call.kwargs)`` of
    the task ``call`` names, on its queue, with its time limits (and, as for factorial, the
    client address its stored result is charged to by a worker of ours: a stock worker ignores
    the header)."""
    message = app.amqp.as_task_v2(
        task_id,
        call.celery_task,
        args=(),
        kwargs=call.kwargs,
        origin=_ORIGIN,
        expires=expires_s,
        # (celery-types says int; Celery takes float seconds)
        time_limit=call.time_limit_s,  # type: ignore[arg-type]
        soft_time_limit=call.soft_time_limit_s,  # type: ignore[arg-type]
    )
    return _envelope(message, call.queue, progress, client_host)


def _envelope(message: task_message, queue: str, progress: bool, client_host: str) -> bytes:
    body = json.dumps(message.body).encode()
    headers = {**message.headers, PROGRESS_HEADER: True} if progress else message.headers
    headers = {**headers, CLIENT_HEADER: client_host}
    envelope: dict[str, Any] = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **message.properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope).encode()


class Envelopes:
    """``task_envelope``'s bytes at a fraction of its cost: Celery builds each kind of message
    (queue, progress) once, with placeholders, and a request fills in its id, number, expiry,
    delivery tag and client address. Building the message anew took a sixth of the gateway's CPU
    per task."""

    _FIELDS: Final = ("id", "argsrepr", "expires", "delivery_tag", "body", "client")

    def __init__(self, app: Celery, expires_s: float | None) -> None:
        self._app = app
        self._expires_s = expires_s
        self._templates: dict[tuple[str, bool], str] = {}

    def make(self, task_id: str, queue: str, number: int, progress: bool, client_host: str = "") -> bytes:
        template = self._templates.get((queue, progress))
        if template is None:
            template = self._templates[(queue, progress)] = self._template(queue, progress)
        expires = ""
        if self._expires_s is not None:
            expires = (datetime.now(UTC) + timedelta(seconds=self._expires_s)).isoformat()
        return (
            template
            % {
                "id": task_id,
                "argsrepr": f"({number},)",
                "expires": expires,
                "delivery_tag": str(uuid.uuid4()),
                "body": base64.b64encode(b"[[%d]" % number + self._body_tail).decode("ascii"),
                # Escaped as a JSON string's content (an address is plain ASCII, but be safe).
                "client": json.dumps(client_host)[1:-1],
            }
        ).encode()

    @functools.cached_property
    def _body_tail(self) -> bytes:
        body = base64.b64decode(json.loads(task_envelope(self._app, "-", "soft", 0))["body"])
        return body.removeprefix(b"[[0]")

    def _template(self, queue: str, progress: bool) -> str:
        marks = {name: f"\x00{name}\x00" for name in self._FIELDS}
        envelope = json.loads(
            task_envelope(
                self._app,
                marks["id"],
                queue,
                0,
                expires_s=self._expires_s,
                progress=progress,
                client_host=marks["client"],
            )
        )
        return _template_of(envelope, marks, "argsrepr", self._expires_s)


class CallEnvelopes:
    """``call_envelope``'s bytes at a fraction of its cost, as ``Envelopes`` makes factorial's:
    Celery builds each kind of message (task, queue, time limits, progress) once, with
    placeholders, and a request fills in its id, keyword arguments, expiry, delivery tag and
    client address. Building the message anew took a quarter of a catalog request's CPU."""

    _FIELDS: Final = ("id", "kwargsrepr", "expires", "delivery_tag", "body", "client")

    def __init__(self, app: Celery, expires_s: float | None) -> None:
        self._app = app
        self._expires_s = expires_s
        # By kind: the template, and the body's tail after the keyword arguments.
        self._templates: dict[tuple[str, str, float | None, float | None, bool], tuple[str, bytes]] = {}

    def make(self, task_id: str, call: Call, progress: bool, client_host: str = "") -> bytes:
        kind = (call.celery_task, call.queue, call.soft_time_limit_s, call.time_limit_s, progress)
        made = self._templates.get(kind)
        if made is None:
            made = self._templates[kind] = self._template(call, progress)
        template, tail = made
        expires = ""
        if self._expires_s is not None:
            expires = (datetime.now(UTC) + timedelta(seconds=self._expires_s)).isoformat()
        kwargs = json.dumps(call.kwargs)
        return (
            template
            % {
                "id": task_id,
                # Only shown (logs, Flower): the JSON, cut as Celery cuts its repr.
                "kwargsrepr": json.dumps(kwargs[:_KWARGSREPR_MAX_CHARS])[1:-1],
                "expires": expires,
                "delivery_tag": str(uuid.uuid4()),
                "body": base64.b64encode(b"[[], " + kwargs.encode() + tail).decode("ascii"),
                "client": json.dumps(client_host)[1:-1],
            }
        ).encode()

    def _template(self, call: Call, progress: bool) -> tuple[str, bytes]:
        marks = {name: f"\x00{name}\x00" for name in self._FIELDS}
        empty = replace(call, kwargs={})
        envelope = json.loads(
            call_envelope(
                self._app,
                marks["id"],
                empty,
                expires_s=self._expires_s,
                progress=progress,
                client_host=marks["client"],
            )
        )
        tail = base64.b64decode(envelope["body"]).removeprefix(b"[[], {}")
        return _template_of(envelope, marks, "kwargsrepr", self._expires_s), tail


_KWARGSREPR_MAX_CHARS: Final = 1024  # Celery's argsrepr_maxsize


def _template_of(
    envelope: dict[str, Any], marks: dict[str, str], repr_field: str, expires_s: float | None
) -> str:
    """A %-template of ``envelope`` (built by Celery with ``marks`` in its fields): the request's
    own values, the repr, expiry, delivery tag and body, become %(name)s placeholders."""
    headers, properties = envelope["headers"], envelope["properties"]
    headers[repr_field] = marks[repr_field]
    if expires_s is not None:
        headers["expires"] = marks["expires"]
    properties["delivery_tag"] = marks["delivery_tag"]
    envelope["body"] = marks["body"]
    template = json.dumps(envelope).replace("%", "%%")
    for name, mark in marks.items():
        template = template.replace(json.dumps(mark), f'"%({name})s"')
    return template


def submitted_record(queue: str, number: int) -> bytes:
    return json.dumps({"queue": queue, "number": number}).encode()


def call_record(call: Call) -> bytes:
    """A catalog task's record: lookups read from it which task it is (``results.look``)."""
    return json.dumps({"queue": call.queue, "task": call.name}).encode()


# One atomic step per request (a Lua script): reuse the task of the same number if it can still
# give a result; else refuse if the client address stored too many result bytes, or if the hard
# queue's budget, or the address's own, is spent; else mark the id as known and push its task.
# A call repeated because its reply was lost (the connection dropped after Redis ran it) finds the
# mark and pushes nothing, so the pool may retry it like a read. The script reads keys it is not
# given (the meta and record of the task of the same number): fine on one Redis, which is all
# Celery's Redis transport supports.
#
# With progress (ARGV[9]), a created task's reply also says how many tasks were ahead of it:
# the queue's length before the push, and the tasks of that queue that workers have taken and
# not finished. kombu keeps each message a worker has taken in the ``unacked`` hash (KEYS[4])
# until it is acknowledged, which (acks_late) is once the task is done; the value is JSON
# ``[message, exchange, routing_key]``, so the queue (our routing key) ends it.
#
# The budgets count a task's cost from its push until a worker takes it out of the queue, however
# it ends (run, discarded as revoked or expired, cancelled while queued). The ledger (KEYS[5]) is
# a list beside the queue: "<cost> <address>" for each task this script pushed, pushed at the
# same end (LPUSH). Workers take tasks from the other end (kombu's BRPOP), oldest first, so the
# tasks still queued are the ledger's newest LLEN(queue) entries: its older ones have left and
# are forgotten, their cost taken off their address's total (KEYS[6], a hash) and the queue's
# (KEYS[7]). A task that went back to the queue (a worker lost, a restore) or one pushed by
# another client of Celery makes the queue longer than the ledger: the ledger forgets less, which
# errs towards refusing, until the queue drains.
#
# The bytes an address stored (KEYS[8]) are a hash of time buckets (ARGV[15] seconds wide) that
# the workers' result backend fills (result_backend.py); a bucket whose results have all expired
# no longer counts, and is deleted.
_SUBMIT_SCRIPT: Final = """
local record_key, queue, number_key, unacked = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ledger, address_costs, queue_cost, stored_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local task_id, record, envelope = ARGV[1], ARGV[2], ARGV[3]
local expires_s, reuse, pending_at_most_s = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local meta_prefix, record_prefix, progress = ARGV[7], ARGV[8], ARGV[9] == '1'
local address, cost = ARGV[10], tonumber(ARGV[11])
local queue_max, address_max = tonumber(ARGV[12]), tonumber(ARGV[13])
local stored_max, bucket_s = tonumber(ARGV[14]), tonumber(ARGV[15])
local ledger_s = tonumber(ARGV[19])

local function ahead_of_last()
  if not progress then return -1 end
  local ahead = redis.call('LLEN', queue) - 1
  local tail = '"' .. queue .. '"]'
  for _, message in ipairs(redis.call('HVALS', unacked)) do
    if string.sub(message, -#tail) == tail then ahead = ahead + 1 end
  end
  return ahead
end

local running_prefix, worker_run_prefix, replaces_prefix = ARGV[16], ARGV[17], ARGV[18]

-- A task a worker started, whose worker run's heartbeat is gone (it was killed outright): its
-- message comes back only after the visibility timeout. The task created instead (ARGV[1])
-- will also store its result for it and for those it replaced in turn (worker_hooks.py), so
-- their waiters get it too; marked now, in case it is created.
local function lost(id)
  local run = redis.call('GET', running_prefix .. id)
  if not run or redis.call('EXISTS', worker_run_prefix .. run) == 1 then return false end
  local earlier = redis.call('GET', replaces_prefix .. id)
  redis.call('SET', replaces_prefix .. ARGV[1], earlier and (id .. ' ' .. earlier) or id, 'EX', expires_s)
  return true
end

-- 'done', 'pending', or nil when the task cannot give a result any more.
local function state_of(id)
  local head = redis.call('GETRANGE', meta_prefix .. id, 0, 63)
  if head ~= '' then
    local status = string.match(head, '"status":%s*"(%u+)"')
    if status == 'SUCCESS' then return 'done' end
    if status == 'FAILURE' or status == 'REVOKED' then return nil end
  end
  if lost(id) then return nil end
  local ttl_ms = redis.call('PTTL', record_prefix .. id)
  if ttl_ms < 0 then return nil end
  if expires_s * 1000 - ttl_ms > pending_at_most_s * 1000 then return nil end
  return 'pending'
end

-- A retried call for a task already sent (its record exists) sends nothing twice.
if redis.call('EXISTS', record_key) == 1 then return {'created', task_id, ahead_of_last()} end
if reuse then
  local existing = redis.call('GET', number_key)
  if existing then
    local state = state_of(existing)
    if state then return {state, existing} end
  end
end
local now_s = tonumber(redis.call('TIME')[1])

-- Reads only, so far: the first write below decides whether Redis, out of memory, refuses it.
-- The address's stored bytes, from the buckets whose results have not all expired yet.
local stored, expired_buckets = 0, {}
if stored_max > 0 then
  local buckets = redis.call('HGETALL', stored_key)
  for i = 1, #buckets, 2 do
    if (tonumber(buckets[i]) + 1) * bucket_s + expires_s > now_s then
      stored = stored + tonumber(buckets[i + 1])
    else
      expired_buckets[#expired_buckets + 1] = buckets[i]
    end
  end
end
-- The costs still queued: the ledger's entries past the queue's length have left it.
local budgeted = queue_max > 0 or address_max > 0
local left, total, own, addresses = 0, 0, 0, 0
local left_by_address = {}
if budgeted then
  left = math.max(0, redis.call('LLEN', ledger) - redis.call('LLEN', queue))
  local left_entries = left > 0 and redis.call('LRANGE', ledger, -left, -1) or {}
  local left_cost = 0
  for _, entry in ipairs(left_entries) do
    local entry_cost, entry_address = string.match(entry, '^(%d+) (.*)$')
    left_by_address[entry_address] = (left_by_address[entry_address] or 0) + tonumber(entry_cost)
    left_cost = left_cost + tonumber(entry_cost)
  end
  total = tonumber(redis.call('GET', queue_cost) or '0') - left_cost
  own = tonumber(redis.call('HGET', address_costs, address) or '0') - (left_by_address[address] or 0)
  addresses = redis.call('HLEN', address_costs)
  for entry_address, entry_cost in pairs(left_by_address) do
    if tonumber(redis.call('HGET', address_costs, entry_address) or '0') <= entry_cost then
      addresses = addresses - 1
    end
  end
  if own <= 0 then addresses = addresses + 1 end
end

local refused
if stored_max > 0 and stored >= stored_max then
  refused = 'stored_too_much'
elseif address_max > 0 and own >= address_max then
  refused = 'client_busy'
elseif queue_max > 0 and total >= queue_max then
  -- Past the queue's budget, an address below its fair share of it is still admitted, so that
  -- addresses asking for much cannot lock out one that asks for little; up to twice the budget.
  if total >= 2 * queue_max or own >= queue_max / addresses then refused = 'queue_busy' end
end

if not refused then
  -- The first write is a SET, which Redis refuses outright when it is out of memory (after any
  -- other write, a script is let through so it cannot stop half-way).
  redis.call('SET', record_key, record, 'EX', expires_s)
  if reuse then redis.call('SET', number_key, task_id, 'EX', expires_s) end
end
-- Forget what has left the queue (RPOP comes first: Redis lets it through when out of memory).
if left > 0 then
  redis.call('RPOP', ledger, left)
  for entry_address, entry_cost in pairs(left_by_address) do
    if redis.call('HINCRBY', address_costs, entry_address, -entry_cost) <= 0 then
      redis.call('HDEL', address_costs, entry_address)
    end
  end
  if total <= 0 then redis.call('DEL', queue_cost) else redis.call('SET', queue_cost, total) end
end
if #expired_buckets > 0 then redis.call('HDEL', stored_key, unpack(expired_buckets)) end
if refused then return {refused, ''} end
redis.call('LPUSH', queue, envelope)
if budgeted then
  redis.call('LPUSH', ledger, cost .. ' ' .. address)
  redis.call('HINCRBY', address_costs, address, cost)
  redis.call('INCRBY', queue_cost, cost)
  -- Past TASK_EXPIRES without a new task, every task of the ledger has left or will be
  -- discarded unrun, at no cost: the three keys go, rather than wait for the next submission.
  if ledger_s > 0 then
    for _, key in ipairs({ledger, address_costs, queue_cost}) do redis.call('EXPIRE', key, ledger_s) end
  end
end
return {'created', task_id, ahead_of_last()}
"""


_ScriptCall = tuple[tuple[str, ...], tuple[bytes | str | int | float, ...]]  # one script call's keys, args


class NotReplicated(aioredis.RedisError):
    """Fewer replicas than required confirmed the task in time: a failover could lose it."""


@dataclass(frozen=True)
class Rules:
    """How ``submit`` turns a request into a task (the defaults: a new task, always)."""

    reuse: bool = False  # RESULT_REUSE
    task_expires_s: float | None = None  # TASK_EXPIRES: Celery's expires on the message
    pending_at_most_s: float = 0.0  # after this, a task without a result never gets one
    hard_queue_max_digits: int = 0  # HARD_QUEUE_MAX_DIGITS (0: none)
    hard_queue_digits_per_client: int = 0  # HARD_QUEUE_DIGITS_PER_CLIENT (0: none)
    stored_bytes_per_client: int = 0  # STORED_BYTES_PER_CLIENT (0: none)
    # The budgets of every other queue (a catalog task's), in its entries' cost (0: none).
    queue_max_cost: int = 0  # QUEUE_MAX_COST
    queue_cost_per_client: int = 0  # QUEUE_COST_PER_CLIENT

    @classmethod
    def from_config(cls, config: Config) -> Rules:
        # A task starts before it expires, then runs at most MAX_TASK_ATTEMPTS times; one older
        # than that without a result was lost: its number is computed again.
        pending_at_most_s = config.task_expires_s + config.max_task_attempts * config.hard_task_timeout_s
        return cls(
            config.result_reuse,
            config.task_expires_s,
            pending_at_most_s,
            config.hard_queue_max_digits,
            config.hard_queue_digits_per_client,
            config.stored_bytes_per_client,
            config.queue_max_cost,
            config.queue_cost_per_client,
        )


@dataclass(frozen=True)
class Accepted:
    """The submission script took the request (not to be confused with ``admission``, the
    gateway's gate before Redis): the task that answers it, a new one (``created``), or the
    computation of the same number already ``pending`` or ``done``."""

    task_id: str
    state: Literal["created", "pending", "done"]
    ahead: int | None = None  # of a task created for a request with progress

    @property
    def reused(self) -> bool:
        return self.state != "created"


@dataclass(frozen=True)
class Refused:
    """The submission script turned the request away (the hard queue's budget, or the client
    address's, is spent, or the address stored too much): the message the client gets."""

    message: str


_REFUSALS: Final = {
    "queue_busy": Refused(HARD_QUEUE_FULL),
    "client_busy": Refused(CLIENT_BUSY),
    "stored_too_much": Refused(CLIENT_STORED_TOO_MUCH),
}


class Producer:
    """Publishes tasks and records that their ids exist (so a lookup can tell "queued" from
    "never heard of": Celery reports both as PENDING).

    ``submit`` follows ``rules``: it reuses the task of the same number (n! is a pure function),
    refuses when the hard queue's budget or the client address's is spent (in cost: the digits
    of n!, costs.py) or when the address stored too many result bytes, and sends tasks that
    expire unrun. What an address has queued and stored is kept in Redis, so it is counted over
    all its connections, closed ones included, on every gateway of that Redis; a task counts
    until a worker takes it out of the queue. ``send`` always sends a new task.

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
    ) -> None:
        self._app = app
        self._client = client
        self._expires_s = result_expires_s
        self._script_sha = hashlib.sha1(_SUBMIT_SCRIPT.encode()).hexdigest()
        self._min_replicas_ack = min_replicas_ack
        self._rules = rules
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
        accepted = await self._run(task_id, queue, number, "", Rules(), progress)
        return accepted.ahead if isinstance(accepted, Accepted) else None

    async def submit(
        self, task_id: str, queue: str, number: int, client_host: str, *, progress: bool = False
    ) -> Accepted | Refused:
        """Queue ``number!`` as ``task_id``, name the task that already computes it, or refuse;
        raises as ``send`` does. With ``progress``, a created task's ``ahead`` is counted."""
        return await self._run(task_id, queue, number, client_host, self._rules, progress)

    async def submit_call(
        self, task_id: str, call: Call, client_host: str, *, progress: bool = False
    ) -> Accepted | Refused:
        """``submit`` for a catalog task: queue it as ``task_id``, or name the task of identical
        parameters when its entry shares results."""
        rules = replace(self._rules, reuse=call.share_key is not None)
        return await self._run(task_id, call.queue, call, client_host, rules, progress)

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
        self, task_id: str, queue: str, work: int | Call, client_host: str, rules: Rules, progress: bool
    ) -> Accepted | Refused:
        # The known-marker expires with the result it stands for: a result is stored after
        # its task was sent, so it always outlives the marker.
        queue_max, address_max = _budgets(rules, queue)
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
        )
        reply, replicas = await self._batcher.call((keys, args))
        state, accepted_id = _text(reply[0]), _text(reply[1])
        if state == "created" and replicas < self._min_replicas_ack:
            raise NotReplicated(f"{replicas} of {self._min_replicas_ack} replicas confirmed the task")
        if state in _REFUSALS:
            return _REFUSALS[state]
        ahead = int(reply[2]) if state == "created" and progress else None
        return Accepted(accepted_id, state, ahead)  # type: ignore[arg-type]

    async def _run_batch(self, calls: list[_ScriptCall]) -> list[tuple[list[Any], int] | BaseException]:
        """The script once per call, in one pipeline; with ``min_replicas_ack``, one WAIT after
        them all (it covers every write before it on the connection). Each call's answer is its
        script's reply and the replicas that confirmed, or the error its script raised."""
        replies = await self._pipeline(calls)
        if any(isinstance(reply, NoScriptError) for reply in replies[: len(calls)]):
            # Redis lost its script cache (a restart, a failover): load it, then run the calls
            # again. The script is idempotent, so the calls that ran are not sent twice.
            await self._client.script_load(_SUBMIT_SCRIPT)
            replies = await self._pipeline(calls)
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

    async def _pipeline(self, calls: list[_ScriptCall]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVALSHA", self._script_sha, len(keys), *keys, *args)
        if self._min_replicas_ack:
            pipe.execute_command("WAIT", self._min_replicas_ack, REPLICA_ACK_TIMEOUT_MS)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies


def _budgets(rules: Rules, queue: str) -> tuple[int, int]:
    """The queue's budget and an address's share of it, in cost: the hard queue's in digits,
    none for the soft queue (its tasks are cheap), the catalog's in its entries' costs."""
    if queue == HARD_QUEUE:
        return rules.hard_queue_max_digits, rules.hard_queue_digits_per_client
    if queue == SOFT_QUEUE:
        return 0, 0
    return rules.queue_max_cost, rules.queue_cost_per_client


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
