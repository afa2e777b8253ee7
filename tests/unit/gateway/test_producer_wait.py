"""REDIS_MIN_REPLICAS_ACK: the producer returns only once enough replicas hold the task."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis
from celery import Celery

from factorial_ws.config import Config, ConfigError
from factorial_ws.constants import SUBMITTED_KEY_PREFIX
from factorial_ws.gateway import producer
from factorial_ws.gateway.producer import NotReplicated, Producer

TASK_ID = "5ee1a5d6-1f5c-4c53-9d0e-0d3d3a1b2c4d"
SHORT_ACK_TIMEOUT_MS = 200  # the WAIT's timeout, shorter than the product's: it is waited out


@pytest.fixture(autouse=True)
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(producer, "REPLICA_ACK_TIMEOUT_MS", SHORT_ACK_TIMEOUT_MS)


def test_min_replicas_ack_defaults_to_no_wait_and_must_not_be_negative() -> None:
    assert Config().redis_min_replicas_ack == 0
    with pytest.raises(ConfigError, match="REDIS_MIN_REPLICAS_ACK"):
        Config.from_env({"REDIS_MIN_REPLICAS_ACK": "-1"})


async def test_without_the_replicas_it_must_wait_for_send_fails_after_the_wait(
    app: Celery, client: aioredis.Redis
) -> None:
    started = time.monotonic()
    with pytest.raises(NotReplicated, match="0 of 1 replicas"):
        await Producer(app, client, result_expires_s=600, min_replicas_ack=1).send(TASK_ID, "soft", 5)
    assert time.monotonic() - started >= SHORT_ACK_TIMEOUT_MS / 1000
    # The master took the task in one step all the same; it may still run.
    assert await client.llen("soft") == 1
    assert await client.exists(SUBMITTED_KEY_PREFIX + TASK_ID)


async def test_a_submission_that_finds_redis_without_its_script_waits_for_replicas_once_in_all(
    app: Celery, client: aioredis.Redis
) -> None:
    # A new Redis, as after a restart or a failover, has no script cached: the submission loads
    # it and runs again, and the first run's WAIT counts against the same timeout.
    await client.script_flush()
    started = time.monotonic()
    with pytest.raises(NotReplicated):
        await Producer(app, client, result_expires_s=600, min_replicas_ack=1).send(TASK_ID, "soft", 5)
    assert time.monotonic() - started < 2 * SHORT_ACK_TIMEOUT_MS / 1000  # two WAITs take 2x


async def test_a_command_failing_inside_the_submission_is_an_error_with_the_wait_too(
    app: Celery, client: aioredis.Redis
) -> None:
    await client.set("soft", "not a list")  # the LPUSH inside the submission script fails
    with pytest.raises(aioredis.ResponseError, match="WRONGTYPE"):
        await Producer(app, client, result_expires_s=600, min_replicas_ack=1).send(TASK_ID, "soft", 5)
