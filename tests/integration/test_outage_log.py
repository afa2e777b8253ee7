"""What the gateway's log says about a Redis outage: one warning when it starts, one line when it
is over, and nothing else however many tasks wait meanwhile."""

from __future__ import annotations

import time

from peers import client
from support import UNIT_S, Launcher, wait_until

from .probes import hub_subscribed, json_log

WAITING_LOOKUPS = 50
# Long enough for the hub's reconnection attempts to fail through its whole backoff (0.05 s up
# to 1 s: 1.9 s) and then at its longest, 2 s, apart (gateway/backoff.py): six failed attempts
# or more, each of which must log nothing.
OUTAGE_S = 4.0


async def test_a_redis_outage_logs_one_warning_and_one_line_when_over_with_50_lookups_waiting(
    launch: Launcher,
) -> None:
    server = launch.redis()
    gateway, url = launch.gateway(server.url, LOG_FORMAT="json")
    async with client(url) as submitter, client(url) as looker:
        # No worker: the tasks stay queued, so every lookup waits for the whole outage.
        task_ids = []
        for number in range(WAITING_LOOKUPS):  # 50 numbers: one would be one task (RESULT_REUSE)
            ack = await submitter.request({"type": "factorial", "number": number})
            task_ids.append(ack["task_id"])
        for task_id in task_ids:
            reply = await looker.request({"type": "result", "task_id": task_id})
            assert reply == {"type": "pending", "task_id": task_id}, reply
        before = len(json_log(gateway))

        server.stop()
        time.sleep(OUTAGE_S)
        server = launch.redis(port=server.port)
        wait_until(lambda: hub_subscribed(server.url), 10 * UNIT_S, what="the result subscription")
        time.sleep(2 * UNIT_S)  # time for anything else the reconnection would log

    during = [line for line in json_log(gateway)[before:] if line.get("event") is None]
    assert [line["level"] for line in during] == ["WARNING", "INFO"], during
    assert "lost the result subscription" in during[0]["message"]
    assert during[1]["message"] == f"result subscription restored; checking {WAITING_LOOKUPS} waiting tasks"
