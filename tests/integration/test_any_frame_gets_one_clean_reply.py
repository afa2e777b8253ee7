"""Protocol fuzzing against the real gateway: whatever a client sends, it gets well-formed JSON
back, exactly one reply per frame (two for a valid factorial request: the ack, then the result),
never a traceback, and the connection, the server and other clients go on.

One connection carries every example of a test (reconnecting per example would test the
handshake a thousand times, not the protocol). After each example a sentinel request proves that
no extra reply was sent: its own reply must be the very next frame.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from factorial_ws.constants import (
    INVALID_REQUEST,
    JSON_DECODE_ERROR,
    UNKNOWN_TASK,
    UNKNOWN_TASK_ID,
)
from factorial_ws.gateway.conversation import BINARY_FRAME
from factorial_ws.protocol import MAX_REQUEST_ID_CHARS, error, request_id_of
from support import REPLY_TIMEOUT_S, UNIT_S, Launcher, System

MAX_NUMBER = 300  # the fuzz gateway's cap: every valid request is cheap for the worker
FRAME_BYTES_LIMIT = 60_000  # below the default WS_MAX_MESSAGE_BYTES (64 KiB)
DEEP = 200  # nesting a JSON parser may refuse (Python's stops near its recursion limit)
SENTINEL = {"type": "fuzz-sentinel", "id": f"sentinel-{uuid.uuid4()}"}

# What must never reach a client: tracebacks, source locations, exception class names.
LEAKS = (
    "Traceback",
    'File "',
    "line ",
    "Error:",
    "Exception",
    "ValueError",
    "TypeError",
    "KeyError",
    "RecursionError",
    "AttributeError",
    "UnicodeDecodeError",
    "JSONDecodeError",
    "ProtocolError",
    "RedisError",
    "ConnectionClosed",
    "Internal error",
    "factorial_ws",
    "/src/",
)

FUZZ_SETTINGS = settings(
    max_examples=700,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the system under test ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_url(module_launch: Launcher, system: System) -> Iterator[str]:
    """A gateway on the shared Redis and worker, with the rate limit out of the way (the fuzz
    sends thousands of frames a second) and a small MAX_NUMBER; its log, once it has stopped,
    holds no traceback."""
    proc, url = module_launch.gateway(
        system.redis_url,
        name="fuzz-gateway",
        WS_RATE_LIMIT=1_000_000,
        WS_RATE_BURST=1_000_000,
        MAX_NUMBER=MAX_NUMBER,
    )
    yield url
    proc.stop()
    assert "Traceback" not in proc.log(), proc.log()[-3000:]


@pytest.fixture(scope="module")
def fuzzed(fuzz_url: str) -> Iterator[ClientConnection]:
    # No pings of its own: their payload comes from `random`, which Hypothesis watches.
    with connect(fuzz_url, max_size=None, ping_interval=None) as connection:
        yield connection


@pytest.fixture(scope="module")
def bystander(fuzz_url: str) -> Iterator[ClientConnection]:
    """A connection open beside the fuzzed one the whole time."""
    with connect(fuzz_url, max_size=None) as connection:
        yield connection


# --- what a frame should get ----------------------------------------------------------------


def _refuse(name: str) -> Any:
    raise ValueError(name)


def nesting_depth(frame: str) -> int:
    """How deep arrays and objects nest in a JSON text (brackets inside strings don't count)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in frame:
        if escaped:
            escaped = False
        elif in_string:
            escaped = char == "\\"
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def decoded(frame: str) -> tuple[bool, Any]:
    """(True, value) for valid JSON as the protocol defines it (no NaN or Infinity)."""
    try:
        return True, json.loads(frame, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return False, None


def valid_id(data: dict[str, Any]) -> bool:
    value = data.get("id")
    if isinstance(value, str):
        return len(value) <= MAX_REQUEST_ID_CHARS
    return type(value) is int and -(2**63) <= value < 2**63


def is_valid_factorial(data: Any) -> bool:
    if not isinstance(data, dict) or data.get("type") != "factorial":
        return False
    number = data.get("number")
    return ("id" not in data or valid_id(data)) and type(number) is int and 0 <= number <= MAX_NUMBER


def assert_clean(raw: str | bytes) -> dict[str, Any]:
    """One reply: a text frame holding a JSON object with a type, and nothing internal (the
    request id is the client's own text, echoed, so it is left out of the search)."""
    assert isinstance(raw, str), f"binary reply {raw!r}"
    reply = json.loads(raw)
    assert isinstance(reply, dict) and reply.get("type") in ("result", "success", "error"), raw
    ours = json.dumps({k: v for k, v in reply.items() if k != "id"}, ensure_ascii=False)
    for leak in LEAKS:
        assert leak not in ours, raw
    return dict(reply)


def assert_known_error(reply: dict[str, Any]) -> None:
    assert reply["type"] == "error", reply
    message = reply["result"]
    assert isinstance(message, str)
    assert message in (JSON_DECODE_ERROR, UNKNOWN_TASK, UNKNOWN_TASK_ID, BINARY_FRAME) or (
        message.startswith(INVALID_REQUEST)
    ), reply


def receive(ws: ClientConnection) -> dict[str, Any]:
    return assert_clean(ws.recv(timeout=REPLY_TIMEOUT_S))


def exchange(ws: ClientConnection, frame: str | bytes) -> None:
    """Send one frame, check every reply it gets, and that it gets no more than those."""
    ws.send(frame)
    if isinstance(frame, bytes):
        reply = receive(ws)
        assert reply == json.loads(error(BINARY_FRAME, request_id=request_id_of(frame)))
    else:
        check_text_replies(ws, frame)
    ws.send(json.dumps(SENTINEL))
    assert receive(ws).get("id") == SENTINEL["id"], "a frame got more replies than it should"


def check_text_replies(ws: ClientConnection, frame: str) -> None:
    is_json, data = decoded(frame)
    first = receive(ws)
    if isinstance(data, dict) and "id" in data and valid_id(data):
        assert first.get("id") == data["id"], (frame[:200], first)
    elif first.get("type") == "error":
        assert "id" not in first, (frame[:200], first)
    if is_json and is_valid_factorial(data):
        assert first["type"] == "result" and set(first) <= {"type", "task_id", "id"}, first
        result = receive(ws)
        assert result["type"] == "success" and result["task_id"] == first["task_id"], result
        assert result["result"] == math.factorial(data["number"])
        event("ack and result")
        return
    assert_known_error(first)
    event(first["result"].split(":")[0] if first["result"].startswith(INVALID_REQUEST) else first["result"])
    if not is_json or (first["result"] == JSON_DECODE_ERROR and nesting_depth(frame) > DEEP):
        # Deeper than the server's parser goes is refused as undecodable; that is fine.
        assert first["result"] == JSON_DECODE_ERROR, (frame[:200], first)
    elif not isinstance(data, dict):
        assert first["result"].startswith(INVALID_REQUEST), (frame[:200], first)


# --- strategies: every value is JSON *text*, so odd literals (1e309, -0) reach the server ---

odd_numbers = st.sampled_from(
    ["1e309", "-1e309", "1E400", "-0", "-0.0", "0.0", "1e-400", "5.0", "5e0", "0.5e1", "1" + "0" * 100]
)
not_json = st.sampled_from(["NaN", "Infinity", "-Infinity", "0x10", "05", "+5", ".5", "5.", "1_000", "'5'"])
json_numbers = st.one_of(
    odd_numbers,
    st.integers().map(str),
    st.integers(min_value=-(10**60), max_value=10**60).map(str),
    st.integers(min_value=31, max_value=5000).map(lambda digits: "9" * digits),  # past int()'s limit
    st.integers(min_value=0, max_value=MAX_NUMBER).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
json_strings = st.text(max_size=40).map(lambda s: json.dumps(s, ensure_ascii=False))
json_leaves = st.one_of(st.sampled_from(["true", "false", "null"]), json_numbers, json_strings)


def json_array(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def json_object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{key}: {value}" for key, value in pairs) + "}"


def json_containers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(children, max_size=6).map(json_array),
        st.lists(st.tuples(field_names, children), max_size=6).map(json_object),
    )


field_names = st.sampled_from(['"type"', '"number"', '"task_id"', '"id"', '""']) | json_strings
json_values = st.recursive(json_leaves, json_containers, max_leaves=30)
# Almost JSON: a value with one token no JSON parser should take.
almost_json = st.recursive(json_leaves | not_json, json_containers, max_leaves=10)


def usually(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    """The field is there three times out of four."""
    return st.one_of(strategy, strategy, strategy, st.none())


request_types = st.one_of(
    st.just('"factorial"'),
    st.just('"factorial"'),
    st.just('"result"'),
    st.sampled_from(['"Factorial"', '"factorial "', '""', '"success"', '"error"']),
    json_values,
)
numbers = st.one_of(st.integers(min_value=0, max_value=MAX_NUMBER).map(str), json_numbers, json_values)
task_ids = st.one_of(
    st.uuids(version=4).map(lambda u: json.dumps(str(u))),
    st.uuids(version=4).map(lambda u: json.dumps(str(u).upper())),
    st.uuids(version=1).map(lambda u: json.dumps(str(u))),
    st.text(max_size=40).map(json.dumps),
    json_values,
)
request_ids = st.one_of(
    st.text(max_size=MAX_REQUEST_ID_CHARS + 5).map(json.dumps),
    st.integers(min_value=-(2**64), max_value=2**64).map(str),
    json_numbers,
    json_values,
)


@st.composite
def request_like(draw: st.DrawFn) -> str:
    """A JSON object shaped like a request, each field present or not, well- or ill-typed,
    with extra fields, in any order."""
    fields = {
        '"type"': draw(usually(request_types)),
        '"number"': draw(usually(numbers)),
        '"task_id"': draw(st.none() | task_ids),
        '"id"': draw(st.none() | request_ids),
    }
    pairs = [(name, value) for name, value in fields.items() if value is not None]
    pairs += draw(st.lists(st.tuples(json_strings, json_values), max_size=2))
    return json_object(draw(st.permutations(pairs)))


@st.composite
def factorial_requests(draw: st.DrawFn) -> str:
    """Valid factorial requests in their many spellings: optional id, extra fields, any order."""
    pairs = [
        ('"type"', '"factorial"'),
        ('"number"', draw(st.integers(min_value=0, max_value=MAX_NUMBER).map(str) | st.just("-0"))),
    ]
    request_id = draw(
        st.none()
        | st.text(max_size=MAX_REQUEST_ID_CHARS).map(json.dumps)
        | st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str)
    )
    if request_id is not None:
        pairs.append(('"id"', request_id))
    extra_names = st.text(max_size=10).filter(lambda name: name not in ("type", "number", "id"))
    pairs += draw(st.lists(st.tuples(extra_names.map(json.dumps), json_values), max_size=2))
    return json_object(draw(st.permutations(pairs)))


@st.composite
def long_frames(draw: st.DrawFn) -> str:
    """Very long strings and deep nesting, kept below the frame size limit."""
    unit = draw(st.text(min_size=1, max_size=3))
    count = draw(st.integers(min_value=1000, max_value=FRAME_BYTES_LIMIT)) // len(unit.encode()) // 2
    long_text = unit * max(count, 1)
    depth = draw(st.integers(min_value=1, max_value=FRAME_BYTES_LIMIT // 2 - 10))
    return draw(
        st.sampled_from(
            [
                long_text,
                json.dumps({"type": "factorial", "number": long_text}),
                json.dumps({"type": long_text}),
                json.dumps({"type": "factorial", "number": 5, "id": long_text}),
                json.dumps({"type": "result", "task_id": long_text}),
                json.dumps({"type": "factorial", "number": 5, long_text[:1000]: long_text}),
                "[" * depth + "]" * depth,
                '{"a":' * (depth // 6) + "1" + "}" * (depth // 6),
                "1" * (FRAME_BYTES_LIMIT // 2),
                '{"type": "factorial", "number": ' + "7" * (FRAME_BYTES_LIMIT // 2) + "}",
            ]
        )
    )


def within_limit(frame: str | bytes) -> bool:
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
    return size <= FRAME_BYTES_LIMIT


# --- the fuzz tests -------------------------------------------------------------------------


@FUZZ_SETTINGS
@given(frame=st.one_of(st.text(), st.text(max_size=10_000), st.binary(max_size=2000).map(repr)))
def test_any_unicode_text_gets_exactly_one_clean_reply(fuzzed: ClientConnection, frame: str) -> None:
    exchange(fuzzed, frame)


@FUZZ_SETTINGS
@given(frame=st.binary(max_size=4000) | st.text().map(str.encode))
def test_binary_frames_get_an_error_and_the_connection_goes_on(
    fuzzed: ClientConnection, frame: bytes
) -> None:
    exchange(fuzzed, frame)


@FUZZ_SETTINGS
@given(frame=(json_values | almost_json).filter(within_limit))
def test_any_json_value_gets_exactly_one_clean_reply(fuzzed: ClientConnection, frame: str) -> None:
    exchange(fuzzed, frame)


@FUZZ_SETTINGS
@given(frame=(request_like() | factorial_requests()).filter(within_limit))
def test_request_like_objects_get_their_ack_and_result_or_one_error(
    fuzzed: ClientConnection, frame: str
) -> None:
    exchange(fuzzed, frame)


@settings(FUZZ_SETTINGS, max_examples=150)
@given(frame=long_frames().filter(within_limit))
def test_very_long_strings_and_deep_nesting_get_one_clean_reply(fuzzed: ClientConnection, frame: str) -> None:
    exchange(fuzzed, frame)


def test_after_the_fuzz_everyone_is_still_served(
    fuzz_url: str, fuzzed: ClientConnection, bystander: ClientConnection
) -> None:
    # Runs last in this module (pytest keeps file order): the fuzzed connection, the one open
    # beside it, and a new one all still get 5! = 120.
    with connect(fuzz_url, max_size=None) as newcomer:
        for ws in (fuzzed, bystander, newcomer):
            assert ws.protocol.state is State.OPEN
            ws.send(json.dumps({"type": "factorial", "number": 5}))
            ack = receive(ws)
            assert receive(ws) == {"type": "success", "task_id": ack["task_id"], "result": 120}
        # Nothing left unread on the fuzzed connection: every reply was accounted for.
        with pytest.raises(TimeoutError):
            fuzzed.recv(timeout=0.5 * UNIT_S)
