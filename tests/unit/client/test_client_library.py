"""The client library without the real gateway: the pure protocol side (``wire``, ``errors``),
and ``Client``'s I/O against a scripted WebSocket server that plays the gateway step by step
(a real websockets server in this process: real frames, real drops)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import sys
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import gmpy2
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

import factorial_ws
from factorial_ws.client import (
    Client,
    ClientClosed,
    ConnectionFailed,
    ConnectionLost,
    FactorialWSError,
    HandshakeRefused,
    InvalidRequest,
    JSONDecodeFailed,
    RateLimited,
    ServiceUnavailable,
    StoredTooMuch,
    TaskFailed,
    TaskRevoked,
    TaskTimeout,
    TooManyInFlight,
    TooManyQueued,
    UnknownTask,
    UnknownTaskId,
    WorkerLost,
)
from factorial_ws.client.command import connection_problem
from factorial_ws.client.errors import describe_failure, describe_refusal, error_for
from factorial_ws.client.wire import Reply, Request, Step, backoff_delay_s, digits_to_int, parse_reply
from factorial_ws.constants import (
    CLIENT_BUSY,
    CLIENT_STORED_TOO_MUCH,
    INVALID_REQUEST,
    JSON_DECODE_ERROR,
    RATE_LIMITED,
    SERVICE_UNAVAILABLE,
    TASK_FAILED,
    TASK_REVOKED,
    TIMEOUT_ERROR,
    TOO_MANY_IN_FLIGHT,
    UNKNOWN_TASK,
    UNKNOWN_TASK_ID,
    WORKER_LOST,
)
from factorial_ws.supervisor.probes import free_port
from support import UNIT_S, printed_by_fresh_interpreters

TASK_ID = "8d5df9bd-922a-465d-a26b-c00df06a59ae"
OTHER_ID = "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
STEP_TIMEOUT_S = 5 * UNIT_S

# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "error_class"),
    [
        (JSON_DECODE_ERROR, JSONDecodeFailed),
        (UNKNOWN_TASK, UnknownTask),
        (TIMEOUT_ERROR, TaskTimeout),
        (INVALID_REQUEST + "'number' must not be negative", InvalidRequest),
        (UNKNOWN_TASK_ID, UnknownTaskId),
        (SERVICE_UNAVAILABLE, ServiceUnavailable),
        (TOO_MANY_IN_FLIGHT, TooManyInFlight),
        (RATE_LIMITED, RateLimited),
        (TASK_FAILED, TaskFailed),
        (WORKER_LOST, WorkerLost),
        (TASK_REVOKED, TaskRevoked),
        (CLIENT_BUSY, TooManyQueued),
        (CLIENT_STORED_TOO_MUCH, StoredTooMuch),
    ],
)
def test_each_error_message_of_the_protocol_has_its_own_exception(
    message: str, error_class: type[FactorialWSError]
) -> None:
    error = error_for(message, TASK_ID)

    assert type(error) is error_class
    assert isinstance(error, FactorialWSError)
    assert error.message == message and error.task_id == TASK_ID


def test_an_error_message_the_client_does_not_know_raises_the_root_class() -> None:
    error = error_for("Internal error")

    assert type(error) is FactorialWSError
    assert error.message == "Internal error" and error.task_id is None


def test_a_worker_lost_is_a_task_failure_too() -> None:
    assert isinstance(error_for(WORKER_LOST), TaskFailed)


# --- replies ---------------------------------------------------------------------------------


def test_a_success_keeps_its_digits_as_text_and_its_id_as_text() -> None:
    digits = "9" * 10_000  # int() would refuse it (4300 digits), and would be quadratic
    reply = parse_reply(f'{{"type": "success", "task_id": "{TASK_ID}", "result": {digits}, "id": 7}}')

    assert reply == Reply("success", TASK_ID, "7", digits)


def test_a_reply_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_reply("[1, 2]")


@pytest.mark.usefixtures("default_int_digit_limit")
def test_digits_become_the_exact_int_quickly_without_lifting_the_process_wide_limit() -> None:
    expected = gmpy2.fac(300_000)
    digits = expected.digits()
    started = time.perf_counter()
    value = digits_to_int(digits)
    seconds = time.perf_counter() - started
    assert sys.get_int_max_str_digits() == 4300
    assert type(value) is int and value == int(expected)
    assert seconds < 2 * UNIT_S  # int(digits) takes minutes: quadratic in 1.5 million digits
    assert digits_to_int("120") == 120


# --- one request's steps ---------------------------------------------------------------------


def error(message: str, task_id: str | None = TASK_ID) -> Reply:
    return Reply("error", task_id, "0", message)


def acked_factorial() -> Request:
    request = Request(number=5)
    request.frame(0)
    assert request.on_reply(Reply("result", TASK_ID, "0")) is Step.ACKED
    return request


def test_a_factorial_is_asked_as_a_factorial_then_by_its_task_id_once_acked() -> None:
    request = Request(number=5)
    assert json.loads(request.frame(0)) == {"type": "factorial", "number": 5, "id": 0}

    assert request.on_reply(Reply("result", TASK_ID, "0")) is Step.ACKED
    assert request.task_id == TASK_ID
    assert json.loads(request.frame(1)) == {"type": "result", "task_id": TASK_ID, "id": 1}


def test_a_success_finishes_the_request_with_its_digits() -> None:
    request = acked_factorial()

    assert request.on_reply(Reply("success", TASK_ID, "0", "120")) is Step.DONE
    assert request.digits == "120"


def test_a_timeout_after_the_ack_means_the_gateway_stopped_waiting_so_ask_again() -> None:
    request = acked_factorial()

    assert request.on_reply(error(TIMEOUT_ERROR)) is Step.ASK_AGAIN


def test_a_timeout_after_pending_means_ask_again_but_without_pending_it_is_the_tasks_own() -> None:
    request = acked_factorial()
    request.frame(1)  # the lookup
    assert request.on_reply(Reply("pending", TASK_ID, "1")) is Step.WAIT
    assert request.on_reply(error(TIMEOUT_ERROR)) is Step.ASK_AGAIN

    request.frame(2)  # the gateway finds the task finished: it ran past its time limit
    assert request.on_reply(error(TIMEOUT_ERROR)) is Step.FAILED
    assert isinstance(request.error, TaskTimeout) and request.error.task_id == TASK_ID


def test_a_lookup_of_a_timed_out_task_fails_at_once() -> None:
    request = Request(task_id=TASK_ID)
    request.frame(0)

    assert request.on_reply(error(TIMEOUT_ERROR)) is Step.FAILED
    assert isinstance(request.error, TaskTimeout)


def test_not_now_errors_are_the_callers_on_its_own_ask_and_retried_on_the_librarys() -> None:
    first = Request(number=5)
    first.frame(0)
    assert first.on_reply(error(SERVICE_UNAVAILABLE, None)) is Step.FAILED
    assert isinstance(first.error, ServiceUnavailable)

    request = acked_factorial()
    request.frame(1)  # asked again after a reconnection
    for message in (SERVICE_UNAVAILABLE, RATE_LIMITED, TOO_MANY_IN_FLIGHT):
        assert request.on_reply(error(message)) is Step.ASK_LATER
    assert request.on_reply(error(UNKNOWN_TASK_ID)) is Step.FAILED
    assert isinstance(request.error, UnknownTaskId)


def test_a_reply_type_this_version_does_not_know_is_waited_past() -> None:
    request = acked_factorial()

    assert request.on_reply(Reply("paused", TASK_ID, "0")) is Step.WAIT


def test_a_success_without_digits_fails_plainly() -> None:
    request = acked_factorial()

    assert request.on_reply(Reply("success", TASK_ID, "0", "12a")) is Step.FAILED
    assert type(request.error) is FactorialWSError


def test_backoff_doubles_up_to_its_ceiling_with_up_to_half_taken_off() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (10, 5.0), (500, 5.0)]:
        delays = [backoff_delay_s(attempt, 0.1, 5.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert max(delays) - min(delays) > ceiling / 4  # really spread


# --- one line per connection problem ---------------------------------------------------------


def refusal(status: HTTPStatus, body: bytes) -> InvalidStatus:
    return InvalidStatus(Response(status.value, status.phrase, Headers(), body))


def test_a_refused_handshake_is_named_by_its_status_and_the_gateways_reason() -> None:
    text = describe_refusal("ws://h/", refusal(HTTPStatus.UNAUTHORIZED, b"Missing or wrong token\n"))
    assert text == "ws://h/: the gateway refused the connection: HTTP 401 Missing or wrong token"

    assert describe_refusal("ws://h/", refusal(HTTPStatus.FORBIDDEN, b"")).endswith("HTTP 403 Forbidden")


def test_the_command_adds_what_to_do_about_each_refusal() -> None:
    for status, hint in [(401, "--token"), (403, "WS_ALLOWED_ORIGINS"), (503, "WS_MAX_CONNECTIONS")]:
        line = connection_problem(HandshakeRefused("ws://h/: refused", status))
        assert hint in line and "\n" not in line


@pytest.mark.parametrize(
    ("url", "exc", "needle"),
    [
        ("ws://h/", InvalidMessage("did not receive a valid HTTP response"), "use wss://"),
        ("wss://h/", ConnectionResetError(), "is it a plain ws:// server?"),
        ("ws://h/", ConnectionRefusedError(111, "Connection refused"), "is the gateway running?"),
        ("ws://h/", TimeoutError(), "no answer within 10 s"),
    ],
)
def test_a_connection_that_cannot_open_is_named_in_one_line(url: str, exc: Exception, needle: str) -> None:
    line = describe_failure(url, exc, 10.0)

    assert line.startswith(f"{url}: cannot connect: ") and needle in line and "\n" not in line


def test_an_untrusted_certificate_points_the_command_at_ca_file() -> None:
    failure = ConnectionFailed("wss://h/: cannot connect: not trusted")
    failure.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")

    assert connection_problem(failure).endswith("give its CA certificate with --ca-file")


def test_the_packages_own_modules_do_not_load_the_client() -> None:
    probe = (
        "import sys, factorial_ws.cli, factorial_ws.gateway.server, factorial_ws.worker.celery; "
        "print('factorial_ws.client' in sys.modules, 'websockets.asyncio.client' in sys.modules)"
    )
    assert printed_by_fresh_interpreters(probe) == [["False", "False"]]


def test_import_factorial_ws_gives_the_client_lazily() -> None:
    assert factorial_ws.Client is Client
    assert factorial_ws.UnknownTaskId is UnknownTaskId
    with pytest.raises(AttributeError):
        _ = factorial_ws.NoSuchThing


# --- Client against a scripted gateway -------------------------------------------------------


class ScriptedGateway:
    """A WebSocket server whose test body plays the gateway: it reads each request as it comes
    (``next_request``) and answers, drops or refuses by hand."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[tuple[ServerConnection, dict[str, Any]]] = asyncio.Queue()
        self.connections: list[ServerConnection] = []
        self.refuse_with: HTTPStatus | None = None
        self.server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self, port: int = 0) -> None:
        self.server = await serve(self._handle, "127.0.0.1", port, process_request=self._check, max_size=None)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Like a killed gateway: every connection drops, nothing listens."""
        assert self.server is not None
        self.server.close(close_connections=True)
        await self.server.wait_closed()

    def _check(self, connection: ServerConnection, request: HttpRequest) -> Response | None:
        if self.refuse_with is None:
            return None
        return connection.respond(self.refuse_with, "Missing or wrong token\n")

    async def _handle(self, connection: ServerConnection) -> None:
        self.connections.append(connection)
        with contextlib.suppress(ConnectionClosed):
            async for frame in connection:
                await self.requests.put((connection, json.loads(frame)))

    async def next_request(self) -> tuple[ServerConnection, dict[str, Any]]:
        return await asyncio.wait_for(self.requests.get(), STEP_TIMEOUT_S)

    async def no_request(self, wait_s: float = 0.3 * UNIT_S) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.requests.get(), wait_s)


async def send(connection: ServerConnection, **fields: Any) -> None:
    await connection.send(json.dumps(fields))


async def send_success(connection: ServerConnection, task_id: str, digits: str, request_id: Any) -> None:
    """As the gateway does: the digits spliced in as a JSON number."""
    await connection.send(
        f'{{"type": "success", "task_id": "{task_id}", "result": {digits}, "id": {json.dumps(request_id)}}}'
    )


@pytest.fixture
async def gateway() -> AsyncIterator[ScriptedGateway]:
    scripted = ScriptedGateway()
    await scripted.start()
    yield scripted
    if scripted.server is not None:
        scripted.server.close()
        await scripted.server.wait_closed()


async def answered_lookup(client: Client, gateway: ScriptedGateway) -> tuple[dict[str, Any], str]:
    """A lookup of TASK_ID with digits, which the scripted gateway answers with 120: the request
    the client sent, and what the lookup returned."""
    lookup = asyncio.create_task(client.lookup(TASK_ID, digits=True))
    connection, request = await gateway.next_request()
    await send_success(connection, TASK_ID, "120", request["id"])
    return request, await asyncio.wait_for(lookup, STEP_TIMEOUT_S)


def quick_client(url: str, **options: Any) -> Client:
    options.setdefault("backoff_initial_s", 0.02)
    options.setdefault("backoff_max_s", 0.1)
    return Client(url, **options)


async def test_many_requests_in_flight_on_one_connection_each_get_their_own_reply(
    gateway: ScriptedGateway,
) -> None:
    async with quick_client(gateway.url) as client:
        numbers = list(range(20))
        calls = asyncio.gather(*(client.factorial(n) for n in numbers))
        received = [await gateway.next_request() for _ in numbers]
        assert [request["number"] for _, request in received] == numbers
        assert [request["id"] for _, request in received] == list(range(20))  # in call order
        for connection, request in received:
            await send(connection, type="result", task_id=f"{request['number']:08d}-x", id=request["id"])
        for connection, request in reversed(received):  # results in the opposite order
            digits = str(gmpy2.fac(request["number"]))
            await send_success(connection, f"{request['number']:08d}-x", digits, request["id"])
        results = await asyncio.wait_for(calls, STEP_TIMEOUT_S)

    assert results == [int(gmpy2.fac(n)) for n in numbers]
    assert len(gateway.connections) == 1


async def test_proxy_none_connects_directly_past_the_environments_proxy(
    gateway: ScriptedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ws_proxy", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(ConnectionFailed):  # by default the environment's proxy is used...
        async with quick_client(gateway.url, reconnect=False):
            pass
    async with quick_client(gateway.url, proxy=None) as client:  # ...unless told otherwise
        _, digits = await answered_lookup(client, gateway)
        assert digits == "120"


async def test_submit_returns_after_the_ack_with_the_task_id_and_an_awaitable_result(
    gateway: ScriptedGateway,
) -> None:
    async with quick_client(gateway.url) as client:
        submitting = asyncio.create_task(client.submit(20))
        connection, request = await gateway.next_request()
        await asyncio.sleep(0.05 * UNIT_S)
        assert not submitting.done()  # no ack yet
        await send(connection, type="result", task_id=TASK_ID, id=request["id"])
        handle = await asyncio.wait_for(submitting, STEP_TIMEOUT_S)
        assert handle.task_id == TASK_ID and handle.number == 20 and not handle.done()

        with pytest.raises(TimeoutError):  # a caller's timeout does not end the request...
            await asyncio.wait_for(handle.result(), 0.05)
        await send_success(connection, TASK_ID, "2432902008176640000", request["id"])
        assert await asyncio.wait_for(handle, STEP_TIMEOUT_S) == 2432902008176640000  # ...still there
        assert handle.done()


async def test_digits_on_request_come_back_as_the_decimal_text(gateway: ScriptedGateway) -> None:
    async with quick_client(gateway.url) as client:
        request, digits = await answered_lookup(client, gateway)
    assert request == {"type": "result", "task_id": TASK_ID, "id": 0}
    assert digits == "120"


async def test_an_error_reply_raises_its_typed_exception_and_the_connection_goes_on(
    gateway: ScriptedGateway,
) -> None:
    async with quick_client(gateway.url) as client:
        refused = asyncio.create_task(client.factorial(2_000_000))
        connection, request = await gateway.next_request()
        message = INVALID_REQUEST + "'number' must be at most 1000000"
        await send(connection, type="error", result=message, id=request["id"])
        with pytest.raises(InvalidRequest) as raised:
            await asyncio.wait_for(refused, STEP_TIMEOUT_S)
        assert raised.value.message == message

        unknown = asyncio.create_task(client.lookup(TASK_ID))
        connection, request = await gateway.next_request()
        await send(connection, type="error", result=UNKNOWN_TASK_ID, task_id=TASK_ID, id=request["id"])
        with pytest.raises(UnknownTaskId) as raised_unknown:
            await asyncio.wait_for(unknown, STEP_TIMEOUT_S)
        assert raised_unknown.value.task_id == TASK_ID


async def test_after_a_drop_it_reconnects_and_asks_again_by_task_id_until_the_result(
    gateway: ScriptedGateway,
) -> None:
    async with quick_client(gateway.url) as client:
        acked = asyncio.create_task(client.factorial(3000))
        unacked = asyncio.create_task(client.factorial(7))
        old, first = await gateway.next_request()
        await gateway.next_request()
        await send(old, type="result", task_id=TASK_ID, id=first["id"])
        await asyncio.sleep(0.05 * UNIT_S)

        await gateway.stop()  # the gateway goes away, and comes back on the same port
        await gateway.start(gateway.port)
        asked = {}
        for _ in range(2):
            new, request = await gateway.next_request()
            asked[request["type"]] = request
        assert new is not old
        assert asked["result"]["task_id"] == TASK_ID  # the acked one: looked up by its task id
        assert asked["factorial"]["number"] == 7  # the one never acked: sent again

        # Still running: pending, then the gateway stops waiting; the client asks once more.
        lookup = asked["result"]
        await send(new, type="pending", task_id=TASK_ID, id=lookup["id"])
        await send(new, type="error", result=TIMEOUT_ERROR, task_id=TASK_ID, id=lookup["id"])
        _, again = await gateway.next_request()
        assert again == {"type": "result", "task_id": TASK_ID, "id": again["id"]}
        await send_success(new, TASK_ID, str(gmpy2.fac(3000)), again["id"])
        await send(new, type="result", task_id=OTHER_ID, id=asked["factorial"]["id"])
        await send_success(new, OTHER_ID, "5040", asked["factorial"]["id"])

        assert await asyncio.wait_for(acked, STEP_TIMEOUT_S) == int(gmpy2.fac(3000))
        assert await asyncio.wait_for(unacked, STEP_TIMEOUT_S) == 5040


async def acked_factorial_on(client: Client, gateway: ScriptedGateway) -> tuple[asyncio.Task[int], int]:
    """A factorial(20) in flight and acked with TASK_ID; its request id."""
    waiting = asyncio.create_task(client.factorial(20))
    connection, request = await gateway.next_request()
    await send(connection, type="result", task_id=TASK_ID, id=request["id"])
    return waiting, request["id"]


async def test_an_error_without_an_id_makes_it_reconnect_and_ask_everything_again(
    gateway: ScriptedGateway,
) -> None:
    async with quick_client(gateway.url) as client:
        waiting, _ = await acked_factorial_on(client, gateway)
        # Answered before the gateway read the frame: no id, so no way to know whose it is.
        await send(gateway.connections[0], type="error", result=RATE_LIMITED)

        new, lookup = await gateway.next_request()
        assert new is gateway.connections[1]
        assert lookup == {"type": "result", "task_id": TASK_ID, "id": lookup["id"]}
        await send_success(new, TASK_ID, "2432902008176640000", lookup["id"])
        assert await asyncio.wait_for(waiting, STEP_TIMEOUT_S) == 2432902008176640000


async def test_a_not_now_error_on_its_own_lookup_is_asked_again_later(gateway: ScriptedGateway) -> None:
    async with quick_client(gateway.url) as client:
        waiting, request_id = await acked_factorial_on(client, gateway)
        connection = gateway.connections[0]
        await send(connection, type="error", result=TIMEOUT_ERROR, task_id=TASK_ID, id=request_id)
        _, lookup = await gateway.next_request()
        await send(connection, type="error", result=SERVICE_UNAVAILABLE, task_id=TASK_ID, id=lookup["id"])

        _, later = await gateway.next_request()
        assert later["task_id"] == TASK_ID
        await send_success(connection, TASK_ID, "2432902008176640000", later["id"])
        assert await asyncio.wait_for(waiting, STEP_TIMEOUT_S) == 2432902008176640000


async def test_without_a_gateway_for_reconnect_timeout_s_waits_end_in_connection_lost(
    gateway: ScriptedGateway,
) -> None:
    async with quick_client(gateway.url, reconnect_timeout_s=0.3 * UNIT_S) as client:
        waiting, _ = await acked_factorial_on(client, gateway)
        await gateway.stop()

        with pytest.raises(ConnectionLost) as lost:
            await asyncio.wait_for(waiting, STEP_TIMEOUT_S)
        assert "could not be opened again" in lost.value.message
        with pytest.raises(ConnectionLost):
            await client.factorial(5)


async def test_without_reconnect_the_first_drop_ends_in_connection_lost(gateway: ScriptedGateway) -> None:
    async with quick_client(gateway.url, reconnect=False) as client:
        waiting, _ = await acked_factorial_on(client, gateway)
        await gateway.stop()

        with pytest.raises(ConnectionLost):
            await asyncio.wait_for(waiting, STEP_TIMEOUT_S)


async def test_a_refused_handshake_raises_at_connect_with_its_status(gateway: ScriptedGateway) -> None:
    gateway.refuse_with = HTTPStatus.UNAUTHORIZED

    with pytest.raises(HandshakeRefused) as refused:
        async with quick_client(gateway.url):
            pass
    assert refused.value.status_code == 401
    assert "HTTP 401 Missing or wrong token" in refused.value.message


async def test_a_token_refused_while_reconnecting_ends_the_waits_at_once(gateway: ScriptedGateway) -> None:
    async with quick_client(gateway.url, reconnect_timeout_s=None) as client:
        waiting, _ = await acked_factorial_on(client, gateway)
        await gateway.stop()
        gateway.refuse_with = HTTPStatus.UNAUTHORIZED
        await gateway.start(gateway.port)

        with pytest.raises(HandshakeRefused):
            await asyncio.wait_for(waiting, STEP_TIMEOUT_S)


async def test_close_ends_what_is_awaited_with_client_closed(gateway: ScriptedGateway) -> None:
    client = quick_client(gateway.url)
    await client.connect()
    waiting, _ = await acked_factorial_on(client, gateway)

    await client.close()
    with pytest.raises(ClientClosed):
        await asyncio.wait_for(waiting, STEP_TIMEOUT_S)
    with pytest.raises(ClientClosed):
        await client.factorial(5)


async def test_a_client_never_connected_says_how_to_connect() -> None:
    with pytest.raises(ClientClosed, match="async with"):
        await Client("ws://127.0.0.1:9/").factorial(5)


async def test_a_cancelled_factorial_is_not_asked_for_again(gateway: ScriptedGateway) -> None:
    async with quick_client(gateway.url) as client:
        waiting, _ = await acked_factorial_on(client, gateway)
        waiting.cancel()
        await asyncio.sleep(0.05 * UNIT_S)
        await gateway.stop()
        await gateway.start(gateway.port)

        await gateway.no_request()


async def test_frames_are_paced_to_the_rate_limit(gateway: ScriptedGateway) -> None:
    async with quick_client(gateway.url, rate_limit_per_s=20.0, rate_limit_burst=2) as client:
        started = time.monotonic()
        calls = [asyncio.create_task(client.lookup(TASK_ID)) for _ in range(6)]
        for _ in range(6):
            await gateway.next_request()
        seconds = time.monotonic() - started
        for call in calls:
            call.cancel()

    assert seconds >= 0.9 * (6 - 2) / 20.0


async def test_on_frame_sees_every_frame_as_sent(gateway: ScriptedGateway) -> None:
    frames: list[str] = []
    async with quick_client(gateway.url, on_frame=frames.append) as client:
        waiting, request_id = await acked_factorial_on(client, gateway)
        await send_success(gateway.connections[0], TASK_ID, "2432902008176640000", request_id)
        await asyncio.wait_for(waiting, STEP_TIMEOUT_S)

    assert frames == [
        json.dumps({"type": "result", "task_id": TASK_ID, "id": 0}),
        f'{{"type": "success", "task_id": "{TASK_ID}", "result": 2432902008176640000, "id": 0}}',
    ]


async def test_a_request_made_while_reconnecting_goes_out_once_connected(gateway: ScriptedGateway) -> None:
    async with quick_client(gateway.url) as client:
        await gateway.stop()
        await asyncio.sleep(0.1 * UNIT_S)
        assert not client.connected
        waiting = asyncio.create_task(client.factorial(20))
        await asyncio.sleep(0.1 * UNIT_S)
        await gateway.start(gateway.port)

        connection, request = await gateway.next_request()
        assert request == {"type": "factorial", "number": 20, "id": request["id"]}
        await send(connection, type="result", task_id=TASK_ID, id=request["id"])
        await send_success(connection, TASK_ID, "2432902008176640000", request["id"])
        assert await asyncio.wait_for(waiting, STEP_TIMEOUT_S) == 2432902008176640000
