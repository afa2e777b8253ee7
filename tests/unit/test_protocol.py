"""The wire protocol without a socket: every request rule, every reply shape, task ids, routing."""

from __future__ import annotations

import json
import uuid
from typing import Any

import gmpy2
import pytest

from factorial_ws.constants import (
    HARD_QUEUE,
    SOFT_QUEUE,
    TASK_FAILED,
    TIMEOUT_ERROR,
)
from factorial_ws.protocol import (
    MAX_REQUEST_ID_CHARS,
    FactorialRequest,
    Failure,
    ProtocolError,
    RequestId,
    ResultRequest,
    Success,
    ack,
    error,
    is_task_id,
    new_task_id,
    outcome_reply,
    parse_request,
    pending,
    queue_for,
    request_id_of,
    success,
)

MAX = 1_000_000
TASK_ID = "2f1e0b4c-9a8d-4e7f-8c6b-5a4d3c2b1a09"


def parse(message: Any) -> Any:
    frame = message if isinstance(message, str) else json.dumps(message)
    return parse_request(frame, max_number=MAX)


def refusal(message: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse(message)
    return caught.value


# --- valid requests -------------------------------------------------------------------------


@pytest.mark.parametrize("number", [0, 1, 5, 1000, 1001, MAX])
def test_factorial_request_with_an_allowed_number_is_parsed(number: int) -> None:
    assert parse({"type": "factorial", "number": number}) == FactorialRequest(number)


def test_result_request_with_a_task_id_is_parsed() -> None:
    assert parse({"type": "result", "task_id": TASK_ID}) == ResultRequest(TASK_ID)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert parse({"type": "factorial", "number": 3, "extra": [1]}) == FactorialRequest(3)


def test_max_number_is_the_configured_one() -> None:
    assert parse_request('{"type": "factorial", "number": 7}', max_number=7) == FactorialRequest(7)
    with pytest.raises(ProtocolError, match="at most 6"):
        parse_request('{"type": "factorial", "number": 7}', max_number=6)


# --- request ids ----------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["a", "", "x" * MAX_REQUEST_ID_CHARS, 0, -1, 2**63 - 1, -(2**63)])
def test_string_or_64_bit_integer_id_is_kept_for_every_reply(request_id: str | int) -> None:
    assert parse({"type": "factorial", "number": 5, "id": request_id}).request_id == request_id
    assert parse({"type": "result", "task_id": TASK_ID, "id": request_id}).request_id == request_id


@pytest.mark.parametrize(
    "request_id", [True, None, 1.5, [1], {"a": 1}, 2**63, -(2**63) - 1, "x" * (MAX_REQUEST_ID_CHARS + 1)]
)
def test_id_of_another_kind_is_refused_without_echo(request_id: Any) -> None:
    refused = refusal({"type": "factorial", "number": 5, "id": request_id})
    assert refused.message.startswith("Invalid request: 'id' must be")
    assert refused.request_id is None


def test_huge_integer_id_literal_is_refused() -> None:
    refused = refusal('{"type": "factorial", "number": 5, "id": ' + "9" * 5000 + "}")
    assert refused.message.startswith("Invalid request: 'id' must be")


def test_errors_after_a_valid_id_echo_it() -> None:
    assert refusal({"type": "factorial", "number": -1, "id": "q"}).request_id == "q"
    assert refusal({"type": "result", "task_id": "nope", "id": 7}).request_id == 7
    assert refusal({"type": "square", "id": "u"}).request_id == "u"
    assert refusal({"id": "m"}).request_id == "m"


# --- frames that are not requests -----------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "not json",
        "{",
        '{"type": "factorial", "number": 5',
        "{'type': 'factorial'}",
        '{"type": "factorial", "number": NaN}',
        '{"type": "factorial", "number": Infinity}',
        '{"type": "factorial", "number": -Infinity}',
        "[" * 100_000,
    ],
)
def test_frame_that_is_not_json_is_a_json_decode_error(frame: str) -> None:
    refused = refusal(frame)
    assert refused.message == "JSON decode error"
    assert refused.request_id is None


@pytest.mark.parametrize("frame", ["[]", '[{"type": "factorial", "number": 5}]', "5", '"factorial"', "null"])
def test_json_that_is_not_an_object_is_refused(frame: str) -> None:
    assert refusal(frame).message == "Invalid request: expected a JSON object"


def test_missing_type_is_refused() -> None:
    assert refusal({"number": 5}).message == "Invalid request: missing field 'type'"


@pytest.mark.parametrize("kind", ["square", "", "Factorial", 5, None, True, ["factorial"]])
def test_unknown_or_non_string_type_is_the_seeds_unknown_task(kind: Any) -> None:
    assert refusal({"type": kind, "number": 5}).message == "Unknown task"


# --- number ---------------------------------------------------------------------------------


def test_missing_number_is_refused() -> None:
    assert refusal({"type": "factorial"}).message == "Invalid request: missing field 'number'"


@pytest.mark.parametrize("number", [5.5, 5.0, 1e3, "5", True, False, None, [5], {"n": 5}])
def test_number_that_is_not_an_integer_is_refused(number: Any) -> None:
    assert refusal({"type": "factorial", "number": number}).message == (
        "Invalid request: 'number' must be an integer"
    )


def test_float_literal_with_integral_value_is_refused() -> None:
    assert refusal('{"type": "factorial", "number": 5.0}').message == (
        "Invalid request: 'number' must be an integer"
    )


@pytest.mark.parametrize("number", [-1, -MAX, -(10**20)])
def test_negative_number_is_refused(number: int) -> None:
    assert refusal({"type": "factorial", "number": number}).message == (
        "Invalid request: 'number' must not be negative"
    )


@pytest.mark.parametrize("literal", ["1000001", str(10**20), str(10**100), "9" * 5000])
def test_number_above_max_number_is_refused(literal: str) -> None:
    message = refusal('{"type": "factorial", "number": ' + literal + "}").message
    assert message == f"Invalid request: 'number' must be at most {MAX}"


def test_huge_negative_literal_is_refused_as_negative() -> None:
    message = refusal('{"type": "factorial", "number": -' + "9" * 5000 + "}").message
    assert message == "Invalid request: 'number' must not be negative"


@pytest.mark.usefixtures("default_int_digit_limit")
@pytest.mark.parametrize("sign", ["", "-"])
def test_literal_past_cpythons_digit_limit_is_a_range_error_not_a_decode_error(sign: str) -> None:
    # Were the literal handed to int(), CPython would refuse it and the client would be told
    # its valid JSON is a "JSON decode error".
    message = refusal('{"type": "factorial", "number": ' + sign + "9" * 5000 + "}").message
    assert message.startswith("Invalid request: 'number' must")


# --- task_id --------------------------------------------------------------------------------


def test_missing_task_id_is_refused() -> None:
    assert refusal({"type": "result"}).message == "Invalid request: missing field 'task_id'"


@pytest.mark.parametrize(
    "task_id",
    [
        "",
        "nope",
        5,
        None,
        TASK_ID.upper(),
        TASK_ID.replace("-", ""),
        "{" + TASK_ID + "}",
        TASK_ID + " ",
        TASK_ID[:-1] + "g",
    ],
)
def test_task_id_that_is_not_a_canonical_uuid_is_refused(task_id: Any) -> None:
    assert refusal({"type": "result", "task_id": task_id}).message == (
        "Invalid request: 'task_id' must be a task id (a UUID)"
    )


def test_task_ids_are_random_version_4_uuids() -> None:
    ids = [new_task_id() for _ in range(1000)]
    for task_id in ids:
        parsed = uuid.UUID(task_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert is_task_id(task_id)
    assert len(set(ids)) == len(ids)


# --- replies --------------------------------------------------------------------------------


def test_ack_is_the_seeds_result_message() -> None:
    assert json.loads(ack(TASK_ID)) == {"type": "result", "task_id": TASK_ID}


def test_success_is_the_seeds_message_with_the_result_as_a_json_number() -> None:
    assert json.loads(success(TASK_ID, "120")) == {"type": "success", "task_id": TASK_ID, "result": 120}


def test_pending_names_the_task() -> None:
    assert json.loads(pending(TASK_ID)) == {"type": "pending", "task_id": TASK_ID}


def test_error_without_a_task_is_type_and_result_only() -> None:
    assert json.loads(error("JSON decode error")) == {"type": "error", "result": "JSON decode error"}


def test_error_about_a_task_names_it() -> None:
    assert json.loads(error(TIMEOUT_ERROR, TASK_ID)) == {
        "type": "error",
        "result": "Timeout error",
        "task_id": TASK_ID,
    }


@pytest.mark.parametrize("request_id", ["abc", 7, 0, ""])
def test_every_reply_echoes_the_request_id(request_id: str | int) -> None:
    replies = [
        ack(TASK_ID, request_id),
        pending(TASK_ID, request_id),
        success(TASK_ID, "1", request_id),
        error("Unknown task", None, request_id),
        error(TIMEOUT_ERROR, TASK_ID, request_id),
    ]
    assert [json.loads(reply)["id"] for reply in replies] == [request_id] * len(replies)


def test_replies_without_a_request_id_have_no_id_field() -> None:
    replies = [ack(TASK_ID), pending(TASK_ID), success(TASK_ID, "1"), error("x", TASK_ID)]
    assert all("id" not in json.loads(reply) for reply in replies)


def test_request_id_with_quotes_is_escaped_in_success() -> None:
    reply = json.loads(success(TASK_ID, "2", 'a"b\\c'))
    assert reply["id"] == 'a"b\\c' and reply["result"] == 2


def test_success_of_a_million_digits_stays_exact_and_valid_json() -> None:
    digits = str(gmpy2.fac(210_000).digits())
    assert len(digits) > 1_000_000
    reply = json.loads(success(TASK_ID, digits, 3), parse_int=str)
    assert reply == {"type": "success", "task_id": TASK_ID, "result": digits, "id": "3"}


@pytest.mark.parametrize("digits", ["", "12a", "-5", "1.5", "١٢", "1e5", "5 "])
def test_success_refuses_anything_but_decimal_digits(digits: str) -> None:
    with pytest.raises(ValueError):
        success(TASK_ID, digits)


def test_outcome_reply_shapes_success_and_failure() -> None:
    assert json.loads(outcome_reply(TASK_ID, Success("6"))) == {
        "type": "success",
        "task_id": TASK_ID,
        "result": 6,
    }
    assert json.loads(outcome_reply(TASK_ID, Failure(TASK_FAILED), "r")) == {
        "type": "error",
        "result": TASK_FAILED,
        "task_id": TASK_ID,
        "id": "r",
    }


# --- the id of a frame refused unread --------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "request_id"),
    [
        ('{"type": "factorial", "number": 5, "id": 7}', 7),
        ('{"id": "row-1"}', "row-1"),
        (b'{"type": "result", "id": "bytes"}', "bytes"),
        ('{"type": "factorial", "number": 5}', None),
        ('{"id": 1.5}', None),
        ('{"id": ' + "9" * 40 + "}", None),
        ('{"id": "' + "x" * 129 + '"}', None),
        ("[1, 2]", None),
        ("{not json", None),
        ('{"id": NaN}', None),
        (b'{"id": "\xff"}', None),
        ("[" * 100_000, None),
    ],
)
def test_request_id_of(frame: str | bytes, request_id: RequestId | None) -> None:
    assert request_id_of(frame) == request_id


# --- routing --------------------------------------------------------------------------------


def test_up_to_1000_goes_to_the_soft_queue_and_above_to_hard() -> None:
    assert [queue_for(n) for n in (0, 1, 999, 1000)] == [SOFT_QUEUE] * 4
    assert [queue_for(n) for n in (1001, 5000, MAX)] == [HARD_QUEUE] * 3
    assert (queue_for(1000), queue_for(1001)) == ("soft", "hard")
