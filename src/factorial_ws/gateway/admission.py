"""Admitting a factorial request: one atomic step in Redis that reuses the computation of the same
number when there is one, and otherwise queues a new task.

n! is a pure function, so a number queued, running or computed within ``RESULT_EXPIRES`` is not
computed again: ``factorial-ws:number:<n>`` names the task that computes it, and a request gets
that task's id. A computation that failed, timed out or expired is forgotten, and so is one that
should have ended long ago (its task was lost): the next request computes again. All of it is one
Lua script, so two gateways asking at the same moment cannot both queue the number.

The script reads keys it is not given (the task's meta and record): fine on one Redis, which is
all Celery's Redis transport supports anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import redis.asyncio as aioredis
from celery import Celery

from ..config import Config
from ..constants import NUMBER_KEY_PREFIX, RESULT_KEY_PREFIX, SUBMITTED_KEY_PREFIX
from .producer import submitted_record, task_envelope

_SUBMIT: Final = """
local record_key, queue, number_key = KEYS[1], KEYS[2], KEYS[3]
local task_id, record, envelope = ARGV[1], ARGV[2], ARGV[3]
local expires_s, reuse, pending_at_most_s = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local meta_prefix, record_prefix = ARGV[7], ARGV[8]

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
redis.call('SET', record_key, record, 'EX', expires_s)
if reuse then redis.call('SET', number_key, task_id, 'EX', expires_s) end
redis.call('LPUSH', queue, envelope)
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


class Admission:
    def __init__(self, app: Celery, client: aioredis.Redis, config: Config) -> None:
        self._app = app
        self._config = config
        self._submit = client.register_script(_SUBMIT)

    async def submit(self, task_id: str, queue: str, number: int) -> Admitted:
        """Queue ``number!`` as ``task_id``, or name the task that already computes it.
        Raises redis.RedisError when Redis cannot take it; nothing is sent then."""
        config = self._config
        keys = [SUBMITTED_KEY_PREFIX + task_id, queue, NUMBER_KEY_PREFIX + str(number)]
        args: list[bytes | str | int | float] = [
            task_id,
            submitted_record(queue, number),
            task_envelope(self._app, task_id, queue, number),
            config.result_expires_s,
            int(config.result_reuse),
            pending_at_most_s(config),
            RESULT_KEY_PREFIX,
            SUBMITTED_KEY_PREFIX,
        ]
        state, admitted_id = await self._submit(keys=keys, args=args)
        return Admitted(_text(admitted_id), _text(state))  # type: ignore[arg-type]


def pending_at_most_s(config: Config) -> float:
    """How long after its request a task can still be waiting for a result; a task of the same
    number older than that, with no result, was lost (Redis lost its queue, say)."""
    return config.result_expires_s


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
