"""A command-line client: send requests, print every reply as one JSON line."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from websockets.asyncio.client import connect

_FINAL_TYPES = frozenset({"success", "error"})


@dataclass(frozen=True)
class ClientRun:
    url: str
    numbers: tuple[int, ...] = ()
    task_ids: tuple[str, ...] = ()
    token: str | None = None


def requests_of(run: ClientRun) -> list[dict[str, Any]]:
    """Every request carries an id, so replies can be matched whatever order they come in."""
    requests: list[dict[str, Any]] = [
        {"type": "factorial", "number": number, "id": index} for index, number in enumerate(run.numbers)
    ]
    offset = len(requests)
    requests += [
        {"type": "result", "task_id": task_id, "id": offset + index}
        for index, task_id in enumerate(run.task_ids)
    ]
    return requests


def parse_reply(frame: str) -> dict[str, Any]:
    """Results can have millions of digits: keep integers as text instead of parsing them."""
    reply = json.loads(frame, parse_int=str)
    if not isinstance(reply, dict):
        raise ValueError("reply is not a JSON object")
    return reply


async def run_client(run: ClientRun, out: TextIO = sys.stdout) -> int:
    """Send every request, print every reply; exit code 1 if any reply was an error."""
    headers = {"Authorization": f"Bearer {run.token}"} if run.token else None
    requests = requests_of(run)
    outstanding = {str(request["id"]) for request in requests}
    failed = False
    async with connect(run.url, max_size=None, additional_headers=headers, compression=None) as ws:
        for request in requests:
            await ws.send(json.dumps(request))
        while outstanding:
            frame = await ws.recv()
            text = frame if isinstance(frame, str) else frame.decode()
            print(text, file=out, flush=True)
            reply = parse_reply(text)
            if reply.get("type") in _FINAL_TYPES:
                outstanding.discard(str(reply.get("id")))
                if "id" not in reply:
                    outstanding.clear()  # an error about the connection itself
            failed = failed or reply.get("type") == "error"
    return 1 if failed else 0
