"""Operability against the real processes: /healthz, /metrics, the logs, and the page at /."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from factorial_ws.constants import (
    JSON_DECODE_ERROR,
)
from factorial_ws.supervisor.redis_server import RedisServer
from peers import client
from support import UNIT_S, Launcher, Proc, System, fresh_status_page, wait_until

HTTP_TIMEOUT_S = 10 * UNIT_S
LONG_DIGIT_RUN = re.compile(r"\d{1000}")


@dataclass(frozen=True)
class HttpReply:
    status: int
    content_type: str
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(ws_url: str, path: str) -> HttpReply:
    url = ws_url.replace("ws://", "http://").rstrip("/") + path
    with fresh_status_page(url):
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as reply:
                return HttpReply(reply.status, reply.headers["Content-Type"], reply.read().decode())
        except urllib.error.HTTPError as reply:
            return HttpReply(reply.code, reply.headers["Content-Type"], reply.read().decode())


def scrape(ws_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by name and sorted labels, as Prometheus would parse it."""
    reply = http_get(ws_url, "/metrics")
    assert reply.status == 200
    assert reply.content_type.startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.body)
        for sample in family.samples
    }


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def gateway_without_hard_worker(launch: Launcher, redis_server: RedisServer) -> tuple[Proc, str]:
    """A gateway and a worker that serves only the soft queue."""
    launch.worker(redis_server.url, queues="soft", concurrency=1)
    return launch.gateway(redis_server.url)


# --- health ---------------------------------------------------------------------------------


def test_health_is_ok_when_redis_the_subscription_and_a_worker_per_queue_are_there(system: System) -> None:
    reply = http_get(system.url, "/healthz")

    assert reply.status == 200
    assert reply.content_type == "application/json"
    report = reply.json()
    assert report["redis"] is True
    assert report["result_subscription"] is True
    assert report["workers"]["soft"] >= 1
    assert report["workers"]["hard"] >= 1
    assert set(report["queue_depth"]) == {"soft", "hard"}
    assert report["problems"] == []


async def test_health_is_unavailable_and_names_the_queue_without_a_worker(
    gateway_without_hard_worker: tuple[Proc, str],
) -> None:
    _, url = gateway_without_hard_worker
    async with client(url) as ws:
        ack = await ws.request({"type": "factorial", "number": 2000})  # hard: nobody takes it
        assert ack["type"] == "result"

        reply = http_get(url, "/healthz")

        assert reply.status == 503
        report = reply.json()
        assert report["redis"] is True
        assert report["workers"] == {"soft": 1, "hard": 0}
        assert report["queue_depth"]["hard"] == 1
        assert report["problems"] == ["no worker seen on queue 'hard'"]
        assert sample(scrape(url), "factorial_ws_tasks_waiting") == 1


def test_health_is_unavailable_when_redis_is_down(launch: Launcher, redis_server: RedisServer) -> None:
    launch.worker(redis_server.url, concurrency=1)
    gateway, url = launch.gateway(redis_server.url)
    assert http_get(url, "/healthz").status == 200
    redis_server.stop()

    wait_until(lambda: http_get(url, "/healthz").status == 503, what="health to report Redis down")
    report = http_get(url, "/healthz").json()

    assert report["redis"] is False
    assert "Redis is unreachable" in report["problems"]
    assert gateway.alive()


# --- metrics --------------------------------------------------------------------------------


async def test_metrics_count_real_requests_errors_tasks_and_result_times(system: System) -> None:
    before = scrape(system.url)
    async with client(system.url) as ws:
        _, soft = await ws.factorial(5)
        _, hard = await ws.factorial(1001)
        lookup = await ws.request({"type": "result", "task_id": soft["task_id"]})
        negative = await ws.request({"type": "factorial", "number": -1})
        garbled = await ws.request("{not json")
        assert [soft["type"], hard["type"], lookup["type"]] == ["success"] * 3
        assert [negative["type"], garbled["type"]] == ["error"] * 2
        during = scrape(system.url)
    wait_until(
        lambda: (
            sample(scrape(system.url), "factorial_ws_connections_open")
            == sample(during, "factorial_ws_connections_open") - 1
        ),
        10 * UNIT_S,
        what="the closed connection to leave the gauge",
    )
    after = scrape(system.url)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert sample(during, "factorial_ws_connections_open") >= 1
    assert moved("factorial_ws_requests_total", type="factorial") == 2
    assert moved("factorial_ws_requests_total", type="result") == 1
    assert moved("factorial_ws_requests_total", type="invalid") == 2
    assert moved("factorial_ws_errors_total", message="Invalid request") == 1
    assert moved("factorial_ws_errors_total", message=JSON_DECODE_ERROR) == 1
    for queue in ("soft", "hard"):  # a new task, or the one of the same number (RESULT_REUSE)
        tasks = ("factorial_ws_tasks_submitted_total", "factorial_ws_tasks_reused_total")
        assert sum(moved(name, queue=queue) for name in tasks) == 1
    assert moved("factorial_ws_result_seconds_count", queue="soft") == 1
    assert moved("factorial_ws_result_seconds_count", queue="hard") == 1
    assert moved("factorial_ws_result_seconds_sum", queue="hard") > 0
    assert sample(after, "factorial_ws_result_seconds_bucket", queue="soft", le="+Inf") >= 1


# --- logs -----------------------------------------------------------------------------------


def events_of(log: str) -> list[dict[str, Any]]:
    """Every line of a JSON log as an object (a line that is not JSON fails the test)."""
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


async def test_json_log_has_one_object_per_event_with_task_number_queue_and_duration(
    launch: Launcher, system: System
) -> None:
    gateway, url = launch.gateway(system.redis_url, LOG_FORMAT="json", ACCESS_LOG=1)
    async with client(url) as ws:
        ack, done = await ws.factorial(5)
        await ws.request({"type": "result", "task_id": ack["task_id"]})
        await ws.request({"type": "factorial", "number": -1})
    task_id = ack["task_id"]
    wait_until(lambda: '"disconnect"' in gateway.log(), 10 * UNIT_S, what="the disconnect line")
    lines = events_of(gateway.log())

    by_event = {line.get("event"): line for line in lines}
    assert {"connect", "request", "result", "error", "disconnect"} <= set(by_event)
    request = next(line for line in lines if line.get("event") == "request" and "number" in line)
    assert (request["task_id"], request["number"], request["queue"]) == (task_id, 5, "soft")
    result = next(line for line in lines if line.get("event") == "result" and "number" in line)
    assert (result["task_id"], result["number"], result["queue"]) == (task_id, 5, "soft")
    assert result["duration_ms"] >= 0
    lookup = [line for line in lines if line.get("event") == "result" and line is not result]
    assert [line["task_id"] for line in lookup] == [task_id]
    assert by_event["error"]["detail"] == "Invalid request: 'number' must not be negative"
    assert by_event["connect"]["peer"] == by_event["disconnect"]["peer"]
    assert all({"time", "level", "message"} <= set(line) for line in lines)
    assert done["type"] == "success"


async def test_a_huge_result_is_never_written_to_the_gateway_or_worker_log(system: System) -> None:
    async with client(system.url) as ws:
        _, done = await ws.factorial(100_000, timeout_s=60 * UNIT_S)
    assert done["type"] == "success"
    assert len(str(done["result"])) == 456_574
    worker = system.workers[0]
    wait_until(lambda: done["task_id"] + "] succeeded" in worker.log(), what="the worker's success line")

    assert not LONG_DIGIT_RUN.search(system.gateway.log() if system.gateway else "")
    assert not LONG_DIGIT_RUN.search(worker.log())


# --- the page -------------------------------------------------------------------------------


def test_root_serves_a_page_that_needs_nothing_from_another_host(system: System) -> None:
    reply = http_get(system.url, "/")
    module = http_get(system.url, "/client.js")

    assert reply.status == 200
    assert reply.content_type.startswith("text/html")
    # Its script is the client module of the same gateway, which opens the WebSocket.
    assert '<script type="module">' in reply.body and 'from "./client.js"' in reply.body
    assert module.status == 200 and "new WebSocket(" in module.body
    # Nothing is fetched from another host: no external scripts, styles, fonts or images.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", reply.body)
    assert not re.search(r"url\(\s*[\"']?(https?:)?//", reply.body)
    assert "@import" not in reply.body


def test_unknown_paths_get_404(system: System) -> None:
    assert http_get(system.url, "/nope").status == 404
