"""The handshake's token check: where a client puts its token, and how it is compared; the
unauthenticated /healthz and /metrics built at most once a second."""

from __future__ import annotations

from typing import Any, cast
from unittest.mock import patch

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request

from factorial_ws.config import Config
from factorial_ws.constants import QUEUES
from factorial_ws.gateway import metrics
from factorial_ws.gateway.memory import MemoryGauge
from factorial_ws.gateway.results import ResultHub
from factorial_ws.gateway.routes import Routes, token_matches, token_of


def _request(path: str = "/", **headers: str) -> Request:
    return Request(path, Headers(list(headers.items())))


def test_without_a_token_setting_anyone_may_connect() -> None:
    assert Config.from_env({}).token is None
    assert token_matches(None, None)
    assert token_matches(None, "anything")


def test_token_is_read_from_the_bearer_header() -> None:
    assert token_of(_request(Authorization="Bearer s3cret")) == "s3cret"
    assert token_of(_request(Authorization="bearer  s3cret ")) == "s3cret"


def test_token_is_read_from_the_query_for_browsers() -> None:
    assert token_of(_request("/?token=s3cret")) == "s3cret"
    assert token_of(_request("/ws?x=1&token=a%2Bb")) == "a+b"


def test_no_token_given_is_none() -> None:
    assert token_of(_request()) is None
    assert token_of(_request(Authorization="Basic dXNlcjpwYXNz")) is None


def test_token_must_match_exactly() -> None:
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cret", None)
    assert not token_matches("s3cret", "")
    assert not token_matches("s3cret", "s3cre")
    assert not token_matches("s3cret", "s3cretX")
    assert not token_matches("s3cret", "S3CRET")


def _commands_run(stats: dict[str, Any], command: str) -> int:
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_health_and_metrics_are_built_once_a_second_however_many_ask(
    client: aioredis.Redis, path: str
) -> None:
    """Both are unauthenticated, and each cost about 1.2 ms of CPU to build: a flood of GETs
    must cost one build a second, not one per GET."""
    hub = ResultHub(client, client)  # not started: its subscription is reported down
    routes = Routes(Config(), client, hub, MemoryGauge(client, 0.8), lambda: 0)
    builds = 0
    build_metrics = metrics.render

    def counted_render() -> bytes:
        nonlocal builds
        builds += 1
        return build_metrics()

    await client.config_resetstat()
    with patch.object(metrics, "render", counted_render):
        replies = [await routes(cast(ServerConnection, None), _request(path)) for _ in range(50)]
    health_reads = _commands_run(await client.info("commandstats"), "llen")
    assert {reply.status_code for reply in replies if reply} == {200 if path == "/metrics" else 503}
    assert len({reply.body for reply in replies if reply}) == 1
    if path == "/metrics":
        assert builds == 1
    else:
        assert health_reads == len(QUEUES)  # one build: one LLEN per queue
