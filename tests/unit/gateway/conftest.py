"""Fixtures of the producer's tests: Celery's app as the gateway builds it, and a client of a
private, real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from celery import Celery

from factorial_ws.config import Config
from factorial_ws.supervisor.redis_server import RedisServer
from factorial_ws.worker.app import create_app


@pytest.fixture(scope="module")
def app() -> Celery:
    return create_app(Config())


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    async with aioredis.Redis.from_url(redis_server.url) as client:
        yield client


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the event loop's exception handler is given during the test (an error raised in a
    callback, such as a future's done callback or a timer, reaches no test otherwise)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    yield errors
    loop.set_exception_handler(None)
