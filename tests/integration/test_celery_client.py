"""A plain Celery client reads the result of a task the gateway submitted, as docs/protocol.md shows:
the digits come as a string (Python refuses to parse JSON integers over 4300 digits)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from peers import client
from support import System

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _documented_celery_client() -> str:
    """The indented code block of docs/protocol.md that reads a result with Celery."""
    blocks = re.findall(r"(?:^ {4}.*\n)+", PROTOCOL_DOC.read_text(), flags=re.MULTILINE)
    found = [block for block in blocks if "AsyncResult(" in block]
    assert len(found) == 1, "docs/protocol.md shows no (or more than one) Celery client example"
    return "\n".join(line[4:] for line in found[0].splitlines())


async def test_a_celery_client_reads_the_digits_as_a_string_as_the_protocol_doc_shows(
    system: System,
) -> None:
    async with client(system.url) as ws:
        ack, done = await ws.factorial(20)
    assert done["result"] == 2432902008176640000

    namespace: dict[str, Any] = {"REDIS_URL": system.redis_url, "task_id": ack["task_id"]}
    exec(_documented_celery_client(), namespace)

    assert namespace["digits"] == "2432902008176640000"
    assert namespace["number"] == 2432902008176640000
