"""Fixtures of the producer's tests: Celery's app as the gateway builds it, and a client of a
private, real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from celery import Celery

from factorial_ws.celeryapp import create_app
from factorial_ws.config import Config
from factorial_ws.supervisor.redis_server import RedisServer


@pytest.fixture(scope="module")
def app() -> Celery:
    return create_app(Config())


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    async with aioredis.Redis.from_url(redis_server.url) as client:
        yield client
