"""Looking at a running gateway from outside: through its Redis, and through its JSON log."""

from __future__ import annotations

import json
from typing import Any

import redis

from factorial_ws.constants import RESULTS_IDLE_CHANNEL
from support import UNIT_S, Proc


def redis_answers(redis_url: str) -> bool:
    try:
        with redis.Redis.from_url(redis_url, socket_connect_timeout=UNIT_S) as r:
            return bool(r.ping())
    except redis.ConnectionError:
        return False


def hub_subscribed(redis_url: str) -> bool:
    """A gateway's result subscription is up: its idle channel has a subscriber."""
    try:
        with redis.Redis.from_url(redis_url, socket_connect_timeout=UNIT_S) as r:
            return any(count for _, count in r.pubsub_numsub(RESULTS_IDLE_CHANNEL))
    except redis.ConnectionError:
        return False


def json_log(gateway: Proc, event: str | None = None) -> list[dict[str, Any]]:
    """The lines of a gateway started with LOG_FORMAT=json (of one event, if named)."""
    lines = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
    assert all(isinstance(line, dict) for line in lines)
    return [line for line in lines if event is None or line.get("event") == event]
