"""Every reply to a frame that can be read echoes the frame's ``id``, refusals included, so a
client with many requests in flight can tell which one was refused; the bundled client then
goes on waiting for the others."""

from __future__ import annotations

import json
import subprocess
import uuid

from factorial_ws.constants import RATE_LIMITED
from factorial_ws.gateway.session import BINARY_FRAME
from support import PYTHON, REPLY_TIMEOUT_S, Launcher, client, process_env

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


async def test_a_rate_limited_frame_gets_its_id_back(launch: Launcher) -> None:
    server = launch.redis()
    _, url = launch.gateway(server.url, WS_RATE_LIMIT=0.1, WS_RATE_BURST=1)
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
    _, url = launch.gateway(server.url)
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


def test_the_cli_client_waits_for_its_other_requests_after_one_is_refused(launch: Launcher) -> None:
    system = launch.system(WS_RATE_LIMIT=0.1, WS_RATE_BURST=1)
    command = [PYTHON, "-m", "factorial_ws", "client", "--url", system.url, "5", "6", "7"]
    run = subprocess.run(
        command, env=process_env(system.redis_url), capture_output=True, text=True, timeout=REPLY_TIMEOUT_S
    )

    replies = [json.loads(line) for line in run.stdout.splitlines()]
    by_id = {(reply["id"], reply["type"]): reply for reply in replies}
    assert len(replies) == 4, run.stdout + run.stderr
    assert by_id[0, "success"]["result"] == 120
    assert by_id[1, "error"]["result"] == by_id[2, "error"]["result"] == RATE_LIMITED
    assert uuid.UUID(by_id[0, "result"]["task_id"])
    assert run.returncode == 1  # a refused request is an error
