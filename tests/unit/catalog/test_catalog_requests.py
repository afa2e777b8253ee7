"""The wire protocol with a catalog: any of its types is a request, the message's fields less
type, id and progress are its parameters, bad ones are `Invalid request: <field>: <problem>`,
and the seed's factorial keeps its own parser and messages."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from factorial_ws import Catalog
from factorial_ws.catalog import factorial_catalog
from factorial_ws.config import Config
from factorial_ws.constants import UNKNOWN_TASK
from factorial_ws.protocol import (
    FactorialRequest,
    ProtocolError,
    Request,
    Returned,
    TaskRequest,
    outcome_reply,
    parse_request,
    progress,
)

MAX = 1_000_000
TASK_ID = "2f1e0b4c-9a8d-4e7f-8c6b-5a4d3c2b1a09"


class Words(BaseModel):
    text: str
    top: int = 3


def words_catalog(with_factorial: bool = False) -> Catalog:
    catalog = factorial_catalog(Config()) if with_factorial else Catalog()
    catalog.add("count_words", celery_task="app.count", params=Words, queue="words", timeout=5)
    return catalog


def parse(message: Any, catalog: Catalog) -> Request:
    return parse_request(json.dumps(message), max_number=MAX, catalog=catalog)


def refusal(message: Any, catalog: Catalog) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse(message, catalog)
    return caught.value


def test_a_catalog_type_is_a_task_request_with_its_parameters() -> None:
    request = parse({"type": "count_words", "text": "a b", "id": "r1", "progress": True}, words_catalog())
    assert isinstance(request, TaskRequest)
    assert request.entry.name == "count_words"
    assert request.entry.kwargs(request.params) == {"text": "a b", "top": 3}
    assert (request.request_id, request.progress) == ("r1", True)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "count_words"}, "Invalid request: text: Field required"),
        ({"type": "count_words", "text": 1}, "Invalid request: text: Input should be a valid string"),
        (
            {"type": "count_words", "text": "a", "txt": 1},
            "Invalid request: txt: Extra inputs are not permitted",
        ),
        (
            {"type": "count_words", "text": "a", "progress": 1},
            "Invalid request: 'progress' must be true or false",
        ),
    ],
)
def test_bad_parameters_are_an_invalid_request_naming_the_field(
    message: dict[str, Any], expected: str
) -> None:
    caught = refusal({**message, "id": 9}, words_catalog())
    assert (caught.message, caught.request_id) == (expected, 9)


def test_an_integer_too_long_to_parse_is_refused_by_its_field() -> None:
    frame = '{"type": "count_words", "text": "a", "top": ' + "9" * 5000 + "}"
    with pytest.raises(ProtocolError, match=r"^Invalid request: top: integer too long$"):
        parse_request(frame, max_number=MAX, catalog=words_catalog())


def test_a_type_outside_the_catalog_is_the_seeds_unknown_task() -> None:
    assert refusal({"type": "sum"}, words_catalog()).message == UNKNOWN_TASK
    # A catalog without factorial does not serve it.
    assert refusal({"type": "factorial", "number": 5}, words_catalog()).message == UNKNOWN_TASK


def test_the_built_in_factorial_keeps_the_seeds_parser_and_messages() -> None:
    catalog = words_catalog(with_factorial=True)
    assert parse({"type": "factorial", "number": 5}, catalog) == FactorialRequest(5)
    assert refusal({"type": "factorial", "number": -1}, catalog).message == (
        "Invalid request: 'number' must not be negative"
    )
    assert isinstance(parse({"type": "count_words", "text": "x"}, catalog), TaskRequest)


def test_a_users_own_factorial_entry_is_parsed_by_its_model() -> None:
    class Number(BaseModel):
        n: int

    catalog = Catalog()
    catalog.add("factorial", celery_task="mine.fact", params=Number, queue="q", timeout=1)
    assert isinstance(parse({"type": "factorial", "n": 5}, catalog), TaskRequest)


def test_a_returned_result_is_spliced_in_as_json() -> None:
    reply = outcome_reply(TASK_ID, Returned('{"a": 2, "b": [1, "x"]}'), "r1")
    assert json.loads(reply) == {
        "type": "success",
        "task_id": TASK_ID,
        "result": {"a": 2, "b": [1, "x"]},
        "id": "r1",
    }
    # A string result stays a string (only factorial's digits become a JSON number).
    assert json.loads(outcome_reply(TASK_ID, Returned('"120"')))["result"] == "120"


def test_a_progress_reply_carries_the_state_and_its_info() -> None:
    reply = progress(TASK_ID, "PROGRESS", '{"current": 3, "total": 10}', 4)
    assert json.loads(reply) == {
        "type": "progress",
        "task_id": TASK_ID,
        "state": "PROGRESS",
        "info": {"current": 3, "total": 10},
        "id": 4,
    }
    assert json.loads(progress(TASK_ID, "PROGRESS", "null")) == {
        "type": "progress",
        "task_id": TASK_ID,
        "state": "PROGRESS",
        "info": None,
    }
