"""The command-line client against a scripted peer: an error it cannot match to a request does
not make it give up on the requests still waiting."""

from __future__ import annotations

import io
import json

from websockets.asyncio.server import ServerConnection, serve

from factorial_ws.client import ClientRun, run_client


async def _peer(ws: ServerConnection) -> None:
    """Reads both requests, refuses something without saying which, then answers both."""
    for _ in range(2):
        await ws.recv()
    await ws.send(json.dumps({"type": "error", "result": "Internal error"}))
    await ws.send(json.dumps({"type": "success", "task_id": "a", "result": 120, "id": 0}))
    await ws.send(json.dumps({"type": "success", "task_id": "b", "result": 720, "id": 1}))
    await ws.wait_closed()


async def test_an_error_without_id_counts_as_a_failure_and_the_others_are_still_waited_for() -> None:
    out = io.StringIO()
    async with serve(_peer, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        code = await run_client(ClientRun(f"ws://127.0.0.1:{port}/", (5, 6)), out)

    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [reply.get("id") for reply in replies] == [None, 0, 1]
    assert code == 1
