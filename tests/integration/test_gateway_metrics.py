"""One view of a gateway of several processes (WS_PROCESSES=2 on one port): whichever process
answers `/metrics` or `/healthz` reports the whole gateway."""

from __future__ import annotations

import contextlib
import json
import urllib.error
from typing import Any

from factorial_ws.constants import UNKNOWN_TASK_ID
from factorial_ws.protocol import new_task_id
from factorial_ws.supervisor.probes import free_port
from peers import client
from support import PYTHON, Launcher, process_env, wait_until

from .fault_tools import http_get

PROCESSES = 2
CONNECTIONS = 20  # the kernel spreads them over both processes (all on one: 1 chance in 2**19)
SCRAPES = 8  # each one answered by either process


def health_report(url: str, *, fresh: bool = True) -> dict[str, Any]:
    try:
        body = http_get(url, "/healthz", fresh=fresh)
    except urllib.error.HTTPError as error:
        body = error.read().decode()
    report: dict[str, Any] = json.loads(body)
    return report


def sample(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{line_start} not in /metrics")


async def connect_and_look_up(stack: contextlib.AsyncExitStack, url: str) -> None:
    """CONNECTIONS connections, left open in ``stack``, each with one lookup (answered without
    a worker)."""
    connections = [await stack.enter_async_context(client(url)) for _ in range(CONNECTIONS)]
    for ws in connections:
        task_id = new_task_id()
        reply = await ws.request({"type": "result", "task_id": task_id})
        assert reply == {"type": "error", "result": UNKNOWN_TASK_ID, "task_id": task_id}


async def test_metrics_and_health_of_any_process_count_the_requests_and_connections_of_all(
    launch: Launcher,
) -> None:
    server = launch.redis()
    port = free_port()
    command = [PYTHON, "-m", "factorial_ws", "serve", "--host", "127.0.0.1", "--port", str(port)]
    gateway = launch.process("gateway", command, process_env(server.url, WS_PROCESSES=PROCESSES))
    wait_until(lambda: gateway.log().count("gateway listening") == PROCESSES, what="both gateway processes")
    url = f"ws://127.0.0.1:{port}/"

    async with contextlib.AsyncExitStack() as stack:
        await connect_and_look_up(stack, url)
        for _ in range(SCRAPES):
            text = http_get(url, "/metrics")
            assert sample(text, 'factorial_ws_requests_total{type="result"}') == CONNECTIONS
            assert sample(text, 'factorial_ws_errors_total{message="Unknown task id"}') == CONNECTIONS
            assert sample(text, "factorial_ws_connections_open") == CONNECTIONS
            health = health_report(url)  # 503: no worker here, but the report is whole
            assert health["gateway_processes"] == PROCESSES, health
            assert health["result_subscription"] is True, health
