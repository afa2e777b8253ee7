"""Redis sized for big results: the private Redis of `factorial-ws up` has a memory limit with
noeviction and a pub/sub output buffer that holds several 5.5 MB results; a full Redis refuses new
tasks with `Service unavailable` and drops none of those it holds."""

from __future__ import annotations

from pathlib import Path

import redis

from factorial_ws.config import Config
from factorial_ws.constants import HARD_QUEUE, SERVICE_UNAVAILABLE
from factorial_ws.supervisor.redis_server import private_redis
from peers import client
from support import Launcher

MIB = 1024 * 1024


def test_private_redis_of_up_has_a_memory_limit_without_eviction_and_room_for_big_results(
    tmp_path: Path,
) -> None:
    config = Config(data_dir=tmp_path, redis_maxmemory="256mb")
    with private_redis(config) as server, redis.Redis.from_url(server.url, decode_responses=True) as r:
        assert r.config_get("maxmemory")["maxmemory"] == str(256 * MIB)
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        limits = r.config_get("client-output-buffer-limit")["client-output-buffer-limit"].split()
        pubsub_hard_bytes = int(limits[limits.index("pubsub") + 1])
        assert pubsub_hard_bytes >= 16 * 5_565_709  # 16 results of 1000000! at once
    assert Config().redis_maxmemory == "1gb"


async def test_a_full_redis_refuses_new_tasks_and_evicts_none(launch: Launcher) -> None:
    server = launch.redis()
    _, url = launch.gateway(server.url)  # no worker: tasks stay queued
    store = redis.Redis.from_url(server.url)
    async with client(url) as ws:
        queued = [await ws.request({"type": "factorial", "number": 2000 + i}) for i in range(3)]
        assert {ack["type"] for ack in queued} == {"result"}
        store.config_set("maxmemory", store.info("memory")["used_memory"] // 2)  # over full now
        refused = await ws.request({"type": "factorial", "number": 3000, "id": 1})
        assert refused == {"type": "error", "result": SERVICE_UNAVAILABLE, "id": 1}
        assert store.llen(HARD_QUEUE) == 3
        store.config_set("maxmemory", 0)
        ack = await ws.request({"type": "factorial", "number": 3000})
        assert ack["type"] == "result"
