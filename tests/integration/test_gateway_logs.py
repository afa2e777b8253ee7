"""The gateway does what docs/operations.md says of it: every refused request is logged (held to a
rate per connection), every documented log event and field is written, WebSocket handshakes on
other paths than `/` get 404, and the log names the address really bound."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from factorial_ws.constants import SERVICE_UNAVAILABLE, TOO_MANY_IN_FLIGHT
from factorial_ws.gateway.conversation import REFUSALS_LOGGED_IN_A_ROW
from factorial_ws.supervisor.probes import free_port, port_open
from peers import client, raw_websocket, ws_text_frame
from support import PYTHON, UNIT_S, Launcher, Proc, System, paused, process_env, wait_until

from .probes import json_log

OPERATIONS_DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
FLOOD = 100


def refusals(gateway: Proc, detail: str) -> list[dict[str, Any]]:
    return [line for line in json_log(gateway, "error") if line.get("detail") == detail and "peer" in line]


def documented_events() -> dict[str, set[str]]:
    """The Logs table of docs/operations.md: each event and the fields its row names."""
    section = OPERATIONS_DOC.read_text().split("## Logs", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.*) \|$", section, flags=re.MULTILINE)
    assert rows, "docs/operations.md has no table of log events"
    return {
        name: {field.split("=")[0] for field in re.findall(r"`([\w=]+)`", fields)} for name, fields in rows
    }


async def test_too_many_tasks_in_flight_is_logged_and_a_flood_of_refusals_is_held(launch: Launcher) -> None:
    server = launch.redis()
    gateway, url = launch.gateway(server.url, LOG_FORMAT="json", ACCESS_LOG=1, WS_MAX_TASKS_IN_FLIGHT=1)
    async with client(url) as ws:
        ack = await ws.request({"type": "factorial", "number": 5})  # no worker: it waits
        assert ack["type"] == "result"
        for _ in range(FLOOD):
            await ws.send({"type": "factorial", "number": 5})
        replies = [await ws.recv() for _ in range(FLOOD)]
        assert all(reply["result"] == TOO_MANY_IN_FLIGHT for reply in replies)
        wait_until(lambda: refusals(gateway, TOO_MANY_IN_FLIGHT), 10 * UNIT_S, what="a refusal logged")
        held = len(refusals(gateway, TOO_MANY_IN_FLIGHT))
        time.sleep(1.5)  # the log's bucket refills
        await ws.request({"type": "factorial", "number": 5})
        wait_until(
            lambda: len(refusals(gateway, TOO_MANY_IN_FLIGHT)) > held, 10 * UNIT_S, what="the next refusal"
        )

    logged = refusals(gateway, TOO_MANY_IN_FLIGHT)
    # A burst, and then about one a second: not one line per refused frame.
    assert REFUSALS_LOGGED_IN_A_ROW <= held <= REFUSALS_LOGGED_IN_A_ROW + 3, logged
    assert logged[-1]["suppressed"] == FLOOD - held  # the lines left out are counted
    assert {line["peer"] for line in logged} == {json_log(gateway, "connect")[0]["peer"]}


async def test_service_unavailable_is_logged_with_peer_and_detail(launch: Launcher) -> None:
    server = launch.redis()
    gateway, url = launch.gateway(server.url, LOG_FORMAT="json")
    async with client(url) as ws:
        server.stop()
        refused = await ws.request({"type": "factorial", "number": 5})
        lookup_id = "00000000-0000-4000-8000-000000000000"
        refused_lookup = await ws.request({"type": "result", "task_id": lookup_id})
    assert refused["result"] == refused_lookup["result"] == SERVICE_UNAVAILABLE

    wait_until(lambda: len(refusals(gateway, SERVICE_UNAVAILABLE)) == 2, 10 * UNIT_S, what="two lines")
    submit, lookup = refusals(gateway, SERVICE_UNAVAILABLE)
    assert "task_id" not in submit and lookup["task_id"] == lookup_id


async def test_every_log_event_and_field_the_operations_doc_lists_is_written(launch: Launcher) -> None:
    # The gateway waits 1 s at most, so a task the frozen worker cannot start ends in an `error`
    # line of a task (not a large factorial: a fast machine computes 1000000! within the second);
    # a client that does not read its results is dropped after 1 s.
    system = launch.system(LOG_FORMAT="json", ACCESS_LOG=1, HARD_TASK_TIMEOUT=1, WS_SLOW_CONSUMER_TIMEOUT=1)
    async with client(system.url) as ws:
        ack, done = await ws.factorial(5)
        await ws.request({"type": "result", "task_id": ack["task_id"]})
        with paused(system.workers[0].pid):
            _, timed_out = await ws.factorial(20)
        taken_back = await ws.request({"type": "factorial", "number": 999_999})
        await ws.send({"type": "cancel", "task_id": taken_back["task_id"]})
        assert [(await ws.recv())["type"] for _ in range(2)] == ["error", "cancelled"]
        big, _ = await ws.factorial(100_000)  # 456 KB of digits
    async with raw_websocket(system.url) as silent:  # 30 lookups of it, never read: 13 MB
        silent.writer.write(ws_text_frame(json.dumps({"type": "result", "task_id": big["task_id"]})) * 30)
        wait_until(lambda: json_log(gateway_of(system), "slow_consumer"), 10 * UNIT_S, what="the drop")
    async with client(system.url) as ws:
        for _ in range(REFUSALS_LOGGED_IN_A_ROW + 1):
            await ws.request({"type": "factorial", "number": -1})
        time.sleep(1.5)
        await ws.request({"type": "factorial", "number": -1})  # logged, with the count left out
    async with client(system.url) as leaver:  # leaves a task waited for behind
        await leaver.request({"type": "factorial", "number": 1_000_000})
    assert done["result"] == 120 and timed_out["result"] == "Timeout error"
    gateway = gateway_of(system)
    wait_until(lambda: len(json_log(gateway, "disconnect")) == 4, 10 * UNIT_S, what="the disconnect lines")

    for name, fields in documented_events().items():
        written = json_log(gateway, name)
        assert written, f"no {name!r} line, though docs/operations.md lists it"
        missing = {field for field in fields if not any(field in line for line in written)}
        assert not missing, f"{name!r} lines never carry {missing}, though docs/operations.md says so"


def gateway_of(system: System) -> Proc:
    assert system.gateway is not None
    return system.gateway


async def test_a_websocket_handshake_on_another_path_than_the_root_gets_404(launch: Launcher) -> None:
    server = launch.redis()
    url = launch.in_process_gateway(server.url)  # only the protocol: no process start-up needed
    for path in ("foo", "healthz", "index.html", "ws/"):
        with pytest.raises(InvalidStatus) as refused:
            async with client(url + path):
                pass
        assert refused.value.response.status_code == 404, path
    async with client(url + "?client=1") as ws:  # the root, with a query: served
        reply = await ws.request({"type": "factorial", "number": -1})
    assert reply["type"] == "error"


def test_a_wildcard_bind_is_logged_as_the_address_bound_not_as_localhost(launch: Launcher) -> None:
    server = launch.redis()
    port = free_port()
    command = [PYTHON, "-m", "factorial_ws", "serve", "--port", str(port)]
    gateway = launch.process("gateway", command, process_env(server.url, WS_HOST="0.0.0.0"))
    wait_until(lambda: port_open(port), what="the gateway", timeout_s=30 * UNIT_S)
    wait_until(lambda: "listening" in gateway.log(), 10 * UNIT_S, what="the listening line")

    listening = next(line for line in gateway.log().splitlines() if "listening" in line)
    assert f"ws://0.0.0.0:{port}/" in listening, listening
    assert "localhost" not in listening, listening


async def test_without_access_log_no_line_per_request_but_every_error_is_logged(launch: Launcher) -> None:
    server = launch.redis()
    gateway, url = launch.gateway(server.url, LOG_FORMAT="json")  # ACCESS_LOG off: the default
    async with client(url) as ws:
        ack = await ws.request({"type": "factorial", "number": 5})  # no worker: it waits
        refused = await ws.request({"type": "factorial", "number": -1})
    assert ack["type"] == "result" and refused["type"] == "error"
    wait_until(lambda: json_log(gateway, "error"), 10 * UNIT_S, what="the refusal logged")
    assert json_log(gateway, "error")[0]["detail"] == refused["result"]
    for access_event in ("connect", "request", "result", "disconnect"):
        assert not json_log(gateway, access_event), access_event
