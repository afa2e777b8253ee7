"""Admitting a factorial request: one atomic step in Redis that reuses the computation of the same
number when there is one, refuses when the hard queue or the client's share of it is full, and
otherwise queues a new task that expires unrun after ``TASK_EXPIRES``.

n! is a pure function, so a number queued, running or computed within ``RESULT_EXPIRES`` is not
computed again: ``factorial-ws:number:<n>`` names the task that computes it, and a request gets
that task's id. A computation that failed, timed out or expired is forgotten, and so is one that
should have ended long ago (its task was lost): the next request computes again.

Admission to the ``hard`` queue: at most ``HARD_QUEUE_LIMIT`` tasks waiting in it ("Server busy:
too many large tasks queued"), and at most ``HARD_TASKS_PER_CLIENT`` unfinished (queued or
running) per client address ("Too many large tasks queued from this address"). An address's tasks
are a sorted set in Redis, ``factorial-ws:client:<address>``, so the count is the same for all its
connections, closed ones included, on every gateway process and machine of that Redis; a task
leaves it when its result is stored, or once it is too old to end at all.

All of it is one Lua script, so two gateways asking at the same moment cannot both queue a
number, nor both take the last place in a limit.

The script reads keys it is not given (the task's meta and record): fine on one Redis, which is
all Celery's Redis transport supports anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import redis.asyncio as aioredis
from celery import Celery

from ..config import Config
from ..constants import (
    CLIENT_BUSY,
    CLIENT_KEY_PREFIX,
    HARD_QUEUE,
    NUMBER_KEY_PREFIX,
    RESULT_KEY_PREFIX,
    SERVER_BUSY,
    SUBMITTED_KEY_PREFIX,
)
from .producer import submitted_record, task_envelope

_SUBMIT: Final = """
local record_key, queue, number_key, client_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local task_id, record, envelope = ARGV[1], ARGV[2], ARGV[3]
local expires_s, reuse, pending_at_most_s = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local queue_limit, client_limit = tonumber(ARGV[7]), tonumber(ARGV[8])
local meta_prefix, record_prefix = ARGV[9], ARGV[10]

local function finished(id)
  return redis.call('EXISTS', meta_prefix .. id) == 1
end

-- 'done', 'pending', or nil when the task cannot give a result any more.
local function state_of(id)
  local head = redis.call('GETRANGE', meta_prefix .. id, 0, 63)
  if head ~= '' then
    local status = string.match(head, '"status":%s*"(%u+)"')
    if status == 'SUCCESS' then return 'done' end
    if status == 'FAILURE' or status == 'REVOKED' then return nil end
  end
  local ttl_ms = redis.call('PTTL', record_prefix .. id)
  if ttl_ms < 0 then return nil end
  if expires_s * 1000 - ttl_ms > pending_at_most_s * 1000 then return nil end
  return 'pending'
end

-- A retried call for a task already sent (its record exists) sends nothing twice.
if redis.call('EXISTS', record_key) == 1 then return {'created', task_id} end
if reuse then
  local existing = redis.call('GET', number_key)
  if existing then
    local state = state_of(existing)
    if state then return {state, existing} end
  end
end
local now = tonumber(redis.call('TIME')[1])
-- The address's unfinished tasks; those that ended, or are too old to end at all, are dropped.
local unfinished, gone = 0, {}
if client_limit > 0 then
  local members = redis.call('ZRANGE', client_key, 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local id, since = members[i], tonumber(members[i + 1])
    if since < now - pending_at_most_s or finished(id) then
      gone[#gone + 1] = id
    else
      unfinished = unfinished + 1
    end
  end
end
local refused
if client_limit > 0 and unfinished >= client_limit then
  refused = 'client_busy'
elseif queue_limit > 0 and redis.call('LLEN', queue) >= queue_limit then
  refused = 'queue_busy'
else
  -- The first write is a SET, which Redis refuses outright when it is out of memory (after any
  -- other write, a script is let through so it cannot stop half-way).
  redis.call('SET', record_key, record, 'EX', expires_s)
  if reuse then redis.call('SET', number_key, task_id, 'EX', expires_s) end
  redis.call('LPUSH', queue, envelope)
  if client_limit > 0 then
    redis.call('ZADD', client_key, now, task_id)
    redis.call('EXPIRE', client_key, math.ceil(pending_at_most_s))
  end
end
if #gone > 0 then redis.call('ZREM', client_key, unpack(gone)) end
if refused then return {refused, ''} end
return {'created', task_id}
"""


@dataclass(frozen=True)
class Admitted:
    """The task that answers the request: a new one (``created``), or the computation of the same
    number already ``pending`` or ``done``."""

    task_id: str
    state: Literal["created", "pending", "done"]

    @property
    def reused(self) -> bool:
        return self.state != "created"


@dataclass(frozen=True)
class Refused:
    message: str


_REFUSALS: Final = {"queue_busy": Refused(SERVER_BUSY), "client_busy": Refused(CLIENT_BUSY)}


class Admission:
    def __init__(self, app: Celery, client: aioredis.Redis, config: Config) -> None:
        self._app = app
        self._config = config
        self._submit = client.register_script(_SUBMIT)

    async def submit(self, task_id: str, queue: str, number: int, client_host: str) -> Admitted | Refused:
        """Queue ``number!`` as ``task_id``, name the task that already computes it, or refuse.
        Raises redis.RedisError when Redis cannot take it; nothing is sent then."""
        config = self._config
        hard = queue == HARD_QUEUE
        keys = [
            SUBMITTED_KEY_PREFIX + task_id,
            queue,
            NUMBER_KEY_PREFIX + str(number),
            CLIENT_KEY_PREFIX + client_host,
        ]
        args: list[bytes | str | int | float] = [
            task_id,
            submitted_record(queue, number),
            task_envelope(self._app, task_id, queue, number, expires_s=config.task_expires_s),
            config.result_expires_s,
            int(config.result_reuse),
            pending_at_most_s(config),
            config.hard_queue_limit if hard else 0,
            config.hard_tasks_per_client if hard else 0,
            RESULT_KEY_PREFIX,
            SUBMITTED_KEY_PREFIX,
        ]
        state, admitted_id = map(_text, await self._submit(keys=keys, args=args))
        if state in _REFUSALS:
            return _REFUSALS[state]
        return Admitted(admitted_id, state)  # type: ignore[arg-type]


def pending_at_most_s(config: Config) -> float:
    """How long after its request a task can still end: it starts before it expires, then runs
    at most MAX_TASK_ATTEMPTS times. A task older than that without a result never will (it was
    lost), so its number is computed again and it no longer counts against its client."""
    return config.task_expires_s + config.max_task_attempts * config.hard_task_timeout_s


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
