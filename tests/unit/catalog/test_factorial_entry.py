"""The built-in catalog: factorial declared through the catalog's own API, agreeing with the
seed's parser that the gateway uses for it, with the budgets' cost (digits of n!)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from factorial_ws.catalog import FACTORIAL, InvalidParams, factorial_catalog
from factorial_ws.config import Config
from factorial_ws.constants import HARD_QUEUE, HARD_TASK_NAME, SOFT_QUEUE, SOFT_TASK_NAME
from factorial_ws.costs import factorial_cost
from factorial_ws.protocol import ProtocolError, parse_request

CONFIG = Config(max_number=5000, hard_task_timeout_s=30, result_reuse=False)


def entry() -> Any:
    found = factorial_catalog(CONFIG).get(FACTORIAL)
    assert found is not None
    return found


def test_the_built_in_catalog_holds_factorial_alone() -> None:
    catalog = factorial_catalog(CONFIG)
    assert [e.name for e in catalog] == [FACTORIAL]
    assert entry().builtin


@pytest.mark.parametrize(
    ("number", "queue", "task"),
    [(0, SOFT_QUEUE, SOFT_TASK_NAME), (1000, SOFT_QUEUE, SOFT_TASK_NAME), (1001, HARD_QUEUE, HARD_TASK_NAME)],
)
def test_factorial_routes_up_to_1000_to_soft_and_above_to_hard(number: int, queue: str, task: str) -> None:
    params = entry().validate({"number": number})
    assert entry().queue_of(params) == queue
    assert entry().task_name(params) == task
    assert entry().kwargs(params) == {"number": number}


@pytest.mark.parametrize("number", [0, 1, 2, 10, 1000, 1001, 5000])
def test_factorial_costs_the_digits_of_n_factorial_as_the_budgets_count(number: int) -> None:
    assert entry().cost_of(entry().validate({"number": number})) == factorial_cost(number)


def test_factorial_takes_its_limits_and_reuse_from_the_config() -> None:
    assert entry().timeout_s == 30.0
    assert entry().share_results is False
    assert factorial_catalog(Config(result_reuse=True)).get(FACTORIAL).share_results  # type: ignore[union-attr]
    assert entry().max_result_bytes > factorial_cost(5000)


def test_factorials_schema_shows_the_bounds_of_number() -> None:
    schema = factorial_catalog(CONFIG).describe()[FACTORIAL]["params"]
    assert schema["properties"]["number"]["minimum"] == 0
    assert schema["properties"]["number"]["maximum"] == 5000
    assert schema["properties"]["number"]["type"] == "integer"
    assert schema["required"] == ["number"]


# The seed's parser, which the gateway uses for the built-in factorial, and the model agree on
# what is a valid number.
@pytest.mark.parametrize("number", [0, 7, 5000, -1, 5001, 5.0, 5.5, "5", True, None, [5]])
def test_the_model_and_the_seeds_parser_accept_the_same_numbers(number: Any) -> None:
    frame = json.dumps({"type": "factorial", "number": number})
    try:
        parse_request(frame, max_number=5000)
        seed_accepts = True
    except ProtocolError:
        seed_accepts = False
    try:
        entry().validate({"number": number})
        model_accepts = True
    except InvalidParams:
        model_accepts = False
    assert seed_accepts == model_accepts
