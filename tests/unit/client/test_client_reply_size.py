"""The client library takes no reply larger than the largest a gateway can send (the success of
1000000!, the gateway's default MAX_NUMBER) unless told to: a broken or hostile server must not
make it buffer hundreds of MiB for ``factorial(5)``. Against a local websockets server that
answers every request with a reply of a chosen size."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from factorial_ws.client import Client, ReplyTooLarge, RequestTooLarge
from factorial_ws.client.wire import MAX_REPLY_BYTES
from support import UNIT_S

TASK_ID = "8d5df9bd-922a-465d-a26b-c00df06a59ae"
# Digits of 1000000! (the largest result a default gateway computes).
LARGEST_RESULT_DIGITS = 5_565_709


def success_frame(digits: str, request_id: object) -> str:
    return (
        f'{{"type": "success", "task_id": "{TASK_ID}", "result": {digits}, "id": {json.dumps(request_id)}}}'
    )


@contextlib.asynccontextmanager
async def gateway_answering(result_digits: int) -> AsyncIterator[str]:
    """A server that acks every request, then answers it with ``result_digits`` digits."""

    async def handle(connection: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in connection:
                request_id = json.loads(frame)["id"]
                await connection.send(json.dumps({"type": "result", "task_id": TASK_ID, "id": request_id}))
                await connection.send(success_frame("1" * result_digits, request_id))

    async with serve(handle, "127.0.0.1", 0, max_size=None) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


def test_the_default_bound_holds_the_largest_result_reply_and_little_more() -> None:
    largest_reply = len(success_frame("1" * LARGEST_RESULT_DIGITS, 2**53))
    assert largest_reply <= MAX_REPLY_BYTES < largest_reply + 64 * 1024


async def test_a_reply_larger_than_any_result_fails_the_request_instead_of_being_buffered() -> None:
    async with gateway_answering(MAX_REPLY_BYTES + 1) as url, Client(url, reconnect=False) as client:
        with pytest.raises(ReplyTooLarge) as raised:
            await asyncio.wait_for(client.factorial(5, digits=True), 10 * UNIT_S)
    assert f"{MAX_REPLY_BYTES} bytes" in str(raised.value)


async def test_the_largest_result_is_taken_by_default() -> None:
    async with gateway_answering(LARGEST_RESULT_DIGITS) as url, Client(url) as client:
        digits = await asyncio.wait_for(client.factorial(5, digits=True), 10 * UNIT_S)
    assert len(digits) == LARGEST_RESULT_DIGITS


async def test_the_bound_is_a_keyword_argument() -> None:
    async with gateway_answering(10_000) as url:
        async with Client(url, max_reply_bytes=20_000) as client:
            assert len(await asyncio.wait_for(client.factorial(5, digits=True), 10 * UNIT_S)) == 10_000
        async with Client(url, max_reply_bytes=5_000) as client:
            with pytest.raises(ReplyTooLarge):
                await asyncio.wait_for(client.factorial(5, digits=True), 10 * UNIT_S)


async def test_a_client_that_got_a_reply_too_large_goes_on_serving_later_requests() -> None:
    async with gateway_answering(10_000) as url, Client(url, max_reply_bytes=5_000) as client:
        with pytest.raises(ReplyTooLarge):
            await asyncio.wait_for(client.factorial(5, digits=True), 10 * UNIT_S)
        with pytest.raises(ReplyTooLarge):  # it reconnected; the server is still too generous
            await asyncio.wait_for(client.factorial(5, digits=True), 10 * UNIT_S)


@contextlib.asynccontextmanager
async def gateway_taking_frames_up_to(max_message_bytes: int) -> AsyncIterator[str]:
    """A server that closes the connection with 1009 on a frame over ``max_message_bytes``, as
    the gateway does past WS_MAX_MESSAGE_BYTES, and answers the others with 120."""

    async def handle(connection: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in connection:
                request_id = json.loads(frame)["id"]
                await connection.send(json.dumps({"type": "result", "task_id": TASK_ID, "id": request_id}))
                await connection.send(success_frame("120", request_id))

    async with serve(handle, "127.0.0.1", 0, max_size=max_message_bytes) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def test_a_request_the_gateway_refuses_for_its_size_fails_alone_as_request_too_large() -> None:
    async with gateway_taking_frames_up_to(200) as url, Client(url, rate_limit_per_s=None) as client:
        too_large = asyncio.ensure_future(client.lookup("x" * 300))
        with pytest.raises(RequestTooLarge):
            await asyncio.wait_for(too_large, 10 * UNIT_S)
        # The connection it closed is replaced; the other requests go on.
        assert await asyncio.wait_for(client.factorial(5), 10 * UNIT_S) == 120
