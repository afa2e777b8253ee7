"""The test's side of the WebSocket: what a test connects to the gateway with.

``client()`` gives a ``Client``, which sends and receives JSON with a timeout on every receive, so
a reply that never comes fails the test instead of hanging it. ``raw_websocket()`` gives a
``RawPeer``: a TCP connection past the opening handshake that does only what the test makes it
(it never answers a ping, and never reads unless told), for tests of slow or misbehaving peers;
``ws_text_frame()`` builds the frames it writes. Timeouts come from ``support`` (``UNIT_S``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

from support import REPLY_TIMEOUT_S, UNIT_S

# A test client that leaves replies unread stops reading its socket (websockets' max_queue), so it
# never sees the gateway's close frame: its close waits out this, not websockets' 10 s.
CLIENT_CLOSE_TIMEOUT_S = 1 * UNIT_S


class Client:
    """A WebSocket client that speaks JSON, with a timeout on every receive."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.connection.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def recv(
        self, timeout_s: float = REPLY_TIMEOUT_S, *, keep_ints_as_text: bool = False
    ) -> dict[str, Any]:
        """The next reply. With ``keep_ints_as_text`` its integers stay digit strings: int() of
        a factorial's millions of digits takes quadratic time."""
        frame = await asyncio.wait_for(self.connection.recv(), timeout_s)
        reply = json.loads(frame, parse_int=str if keep_ints_as_text else None)
        assert isinstance(reply, dict), reply
        return reply

    async def request(
        self, message: dict[str, Any] | str | bytes, timeout_s: float = REPLY_TIMEOUT_S
    ) -> dict[str, Any]:
        await self.send(message)
        return await self.recv(timeout_s)

    async def factorial(
        self, number: int, timeout_s: float = REPLY_TIMEOUT_S
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Send one factorial request; return the ack and the final reply."""
        ack = await self.request({"type": "factorial", "number": number}, timeout_s)
        return ack, await self.recv(timeout_s)


@contextlib.asynccontextmanager
async def client(url: str, **kwargs: Any) -> AsyncIterator[Client]:
    kwargs.setdefault("max_size", None)
    kwargs.setdefault("close_timeout", CLIENT_CLOSE_TIMEOUT_S)
    async with connect(url, **kwargs) as connection:
        yield Client(connection)


@dataclass
class RawPeer:
    """A TCP connection past the WebSocket handshake that speaks no WebSocket by itself."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    head: bytes  # the server's handshake response


@contextlib.asynccontextmanager
async def raw_websocket(url: str) -> AsyncIterator[RawPeer]:
    """A TCP client that completes the opening handshake, then reads or writes only what the
    test makes it (it never answers a ping, and never reads unless told)."""
    host, port = url.removeprefix("ws://").strip("/").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REPLY_TIMEOUT_S)
    try:
        yield RawPeer(reader, writer, head)
    finally:
        writer.close()


def ws_text_frame(text: str) -> bytes:
    """One text frame as a client sends it (masked)."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=True, extensions=[])
