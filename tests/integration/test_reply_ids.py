"""Every reply to a frame that can be read echoes the frame's ``id``, refusals included, so a
client with many requests in flight can tell which one was refused; the bundled client sends
that one again and goes on waiting for the others."""

from __future__ import annotations

import json
import subprocess

from factorial_ws.constants import RATE_LIMITED
from factorial_ws.gateway.conversation import BINARY_FRAME
from peers import client
from support import PYTHON, REPLY_TIMEOUT_S, Launcher, System, process_env

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


async def test_a_rate_limited_frame_gets_its_id_back(launch: Launcher) -> None:
    server = launch.redis()
    url = launch.in_process_gateway(server.url, WS_RATE_LIMIT=0.1, WS_RATE_BURST=1)
    async with client(url) as ws:
        await ws.send({"type": "result", "task_id": UNKNOWN_ID, "id": "first"})
        await ws.send({"type": "result", "task_id": UNKNOWN_ID, "id": "second"})
        await ws.send({"type": "factorial", "number": 5, "id": 3})
        await ws.send("{not json")
        replies = [await ws.recv() for _ in range(4)]

    # The lookup is answered once Redis has been read; the refusals at once.
    assert sorted(replies, key=lambda reply: reply.get("id") != "first") == [
        {"type": "error", "result": "Unknown task id", "task_id": UNKNOWN_ID, "id": "first"},
        {"type": "error", "result": RATE_LIMITED, "id": "second"},
        {"type": "error", "result": RATE_LIMITED, "id": 3},
        {"type": "error", "result": RATE_LIMITED},  # nothing to read an id from
    ]


async def test_a_binary_frame_gets_its_id_back_when_it_holds_utf8_json(launch: Launcher) -> None:
    server = launch.redis()
    url = launch.in_process_gateway(server.url)
    async with client(url) as ws:
        await ws.send(json.dumps({"type": "factorial", "number": 5, "id": "bin"}).encode())
        await ws.send(b'{"type": "factorial", "id": 7, "number": "\xff"}')  # not UTF-8
        await ws.send(b'{"id": ' + b"9" * 40 + b"}")  # not a usable id
        await ws.send(b"\x00\x01")
        replies = [await ws.recv() for _ in range(4)]

    assert replies == [
        {"type": "error", "result": BINARY_FRAME, "id": "bin"},
        {"type": "error", "result": BINARY_FRAME},
        {"type": "error", "result": BINARY_FRAME},
        {"type": "error", "result": BINARY_FRAME},
    ]


def test_the_cli_client_sends_a_frame_refused_for_its_rate_again_and_gets_every_result(
    system: System, launch: Launcher
) -> None:
    url = launch.in_process_gateway(system.redis_url, WS_RATE_LIMIT=2, WS_RATE_BURST=1)  # the shared worker
    command = [PYTHON, "-m", "factorial_ws", "client", "--url", url, "5", "6", "7"]
    run = subprocess.run(
        command, env=process_env(system.redis_url), capture_output=True, text=True, timeout=REPLY_TIMEOUT_S
    )

    replies = [json.loads(line) for line in run.stdout.splitlines()]  # every frame, as received
    refused = [reply for reply in replies if reply.get("result") == RATE_LIMITED]
    assert refused and all("id" in reply for reply in refused), run.stdout + run.stderr
    results = sorted(reply["result"] for reply in replies if reply["type"] == "success")
    assert results == [120, 720, 5040], run.stdout + run.stderr
    assert run.returncode == 0


async def test_requests_handled_together_are_acked_in_request_order(launch: Launcher) -> None:
    """The gateway reads a connection's requests ahead and submits them together; a client
    without ids still matches acks and refusals by position."""
    server = launch.redis()
    url = launch.in_process_gateway(server.url, RESULT_REUSE=0)  # no worker: every task waits
    frames: list[str | dict[str, object]] = []
    for index in range(150):
        frames.append({"type": "factorial", "number": index % 7} if index % 5 else "{not json")
    async with client(url) as ws:
        for frame in frames:
            await ws.send(frame)
        replies = [await ws.recv() for _ in frames]
    kinds = [reply["type"] for reply in replies]
    assert kinds == ["error" if index % 5 == 0 else "result" for index in range(150)]
    assert len({reply["task_id"] for reply in replies if reply["type"] == "result"}) == 120
