"""The catalog without I/O: every entry checked when it is added (one line naming the entry and
the problem), parameters validated by the entry's model, routing, cost, shared-result keys, and
the JSON Schema that GET /tasks shows."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from factorial_ws import Catalog
from factorial_ws.catalog import RESERVED_NAMES, CatalogError, Entry, InvalidParams


class Text(BaseModel):
    text: str = Field(max_length=20)


class Pair(BaseModel):
    a: int
    b: int = 0


def add(catalog: Catalog | None = None, name: str = "count_words", **settings: Any) -> Entry:
    catalog = Catalog() if catalog is None else catalog
    given: dict[str, Any] = {"celery_task": "app.count_words", "params": Text, "queue": "words", "timeout": 5}
    return catalog.add(name, **(given | settings))


def problem(**settings: Any) -> str:
    with pytest.raises(CatalogError) as caught:
        add(**settings)
    return str(caught.value)


# --- checked at start -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RESERVED_NAMES))
def test_an_entry_named_like_a_protocol_message_is_refused(name: str) -> None:
    message = problem(name=name)
    assert message.startswith(f"catalog entry {name!r}: the name is reserved by the protocol")
    assert "\n" not in message


def test_the_protocol_types_result_and_cancel_are_reserved() -> None:
    assert {"result", "cancel"} <= RESERVED_NAMES


def test_an_unknown_setting_is_refused_by_name() -> None:
    assert problem(timout=5) == "catalog entry 'count_words': unknown setting 'timout'"


def test_an_entry_added_twice_is_refused() -> None:
    catalog = Catalog()
    add(catalog)
    with pytest.raises(CatalogError, match=r"^catalog entry 'count_words': added twice$"):
        add(catalog)


@pytest.mark.parametrize("params", [dict, Text(text="a"), "Text", None])
def test_params_that_are_not_a_pydantic_model_are_refused(params: Any) -> None:
    assert problem(params=params).startswith("catalog entry 'count_words': params must be a pydantic model")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"name": ""}, "a name is 1-64 letters"),
        ({"name": "has space"}, "a name is 1-64 letters"),
        ({"celery_task": ""}, "celery_task must be a name or a function"),
        ({"celery_task": 3}, "celery_task must be a name or a function"),
        ({"queue": None}, "queue must be a name or a function"),
        ({"timeout": 0}, "timeout must be a positive number of seconds"),
        ({"timeout": float("inf")}, "timeout must be a positive number of seconds"),
        ({"timeout": True}, "timeout must be a positive number of seconds"),
        ({"time_limit": -1}, "time_limit must be a positive number of seconds"),
        ({"soft_time_limit": "5"}, "soft_time_limit must be a positive number of seconds"),
        ({"share_results": 1}, "share_results must be True or False"),
        ({"cost": 3}, "cost must be a function of the parameters"),
        ({"max_result_bytes": 0}, "max_result_bytes must be a positive int"),
    ],
)
def test_each_bad_setting_is_one_line_naming_the_entry(settings: dict[str, Any], expected: str) -> None:
    message = problem(**settings)
    assert message.startswith("catalog entry ")
    assert expected in message
    assert "\n" not in message


# --- parameters -----------------------------------------------------------------------------


def test_parameters_are_validated_less_the_protocol_fields() -> None:
    entry = add()
    params = entry.validate({"type": "count_words", "id": 7, "progress": True, "text": "a b a"})
    assert isinstance(params, Text) and params.text == "a b a"
    assert entry.kwargs(params) == {"text": "a b a"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "text: Field required"),
        ({"text": 5}, "text: Input should be a valid string"),
        ({"text": "x" * 21}, "text: String should have at most 20 characters"),
        ({"text": "a", "txt": "b"}, "txt: Extra inputs are not permitted"),
    ],
)
def test_bad_parameters_name_the_field_and_what_is_wrong(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        add().validate(fields)
    assert str(caught.value) == message


def test_unknown_fields_are_refused_even_when_the_model_allows_them() -> None:
    class Lenient(BaseModel):
        model_config = ConfigDict(extra="allow")
        a: int

    with pytest.raises(InvalidParams, match=r"^b: Extra inputs are not permitted$"):
        add(params=Lenient).validate({"a": 1, "b": 2})


def test_a_nested_field_is_named_by_its_path() -> None:
    class Outer(BaseModel):
        pair: Pair

    with pytest.raises(InvalidParams, match=r"^pair\.a: Input should be a valid integer"):
        add(params=Outer).validate({"pair": {"a": "x"}})


# --- routing, cost, sharing -----------------------------------------------------------------


def test_a_queue_may_be_a_function_of_the_validated_parameters() -> None:
    entry = add(queue=lambda params: "long" if len(params.text) > 3 else "short")
    assert entry.queue_of(entry.validate({"text": "ab"})) == "short"
    assert entry.queue_of(entry.validate({"text": "abcd"})) == "long"


def test_a_queue_function_that_returns_no_name_is_named_as_the_problem() -> None:
    entry = add(queue=lambda params: None)
    with pytest.raises(CatalogError, match=r"^catalog entry 'count_words': queue returned None, not a name$"):
        entry.queue_of(entry.validate({"text": "a"}))


def test_the_celery_task_may_be_a_function_of_the_parameters() -> None:
    entry = add(celery_task=lambda params: f"app.{params.text}")
    assert entry.task_name(entry.validate({"text": "x"})) == "app.x"


def test_cost_is_one_per_request_unless_the_entry_says() -> None:
    assert add().cost_of(Text(text="abc")) == 1
    entry = add(cost=lambda params: 10 * len(params.text))
    assert entry.cost_of(entry.validate({"text": "abc"})) == 30


@pytest.mark.parametrize("cost", [-1, 1.5, "3", True])
def test_a_cost_that_is_not_a_count_is_named_as_the_problem(cost: Any) -> None:
    entry = add(cost=lambda params: cost)
    with pytest.raises(CatalogError, match=r"^catalog entry 'count_words': cost returned"):
        entry.cost_of(entry.validate({"text": "a"}))


def test_identical_parameters_share_a_key_whatever_their_order() -> None:
    entry = add(params=Pair)
    first = entry.share_key(entry.validate({"a": 1, "b": 2}))
    assert first == entry.share_key(entry.validate({"b": 2, "a": 1}))
    assert first == 'count_words:{"a":1,"b":2}'
    assert first != entry.share_key(entry.validate({"a": 2, "b": 1}))
    # A default given or left out is the same request.
    assert entry.share_key(entry.validate({"a": 1})) == entry.share_key(entry.validate({"a": 1, "b": 0}))


def test_the_settings_are_kept_in_seconds_and_bytes() -> None:
    entry = add(timeout=5, soft_time_limit=3, time_limit=4, share_results=True, max_result_bytes=1000)
    assert (entry.timeout_s, entry.soft_time_limit_s, entry.time_limit_s) == (5.0, 3.0, 4.0)
    assert entry.share_results and entry.max_result_bytes == 1000 and not entry.builtin


# --- discovery ------------------------------------------------------------------------------


def test_the_description_is_keyed_by_name_with_each_models_json_schema() -> None:
    catalog = Catalog()
    add(catalog, timeout=5, share_results=True)
    add(catalog, "pair", params=Pair, timeout=2.5)
    described = catalog.describe()
    assert list(described) == ["count_words", "pair"]
    schema = described["count_words"]["params"]
    assert schema["properties"]["text"] == {"maxLength": 20, "title": "Text", "type": "string"}
    assert schema["required"] == ["text"]
    assert schema["additionalProperties"] is False
    assert described["count_words"]["timeout"] == 5.0 and described["count_words"]["share_results"]
    assert described["pair"]["params"]["properties"]["b"]["default"] == 0


def test_a_catalog_knows_its_entries_by_name() -> None:
    catalog = Catalog()
    entry = add(catalog)
    assert catalog.get("count_words") is entry and "count_words" in catalog
    assert catalog.get("other") is None and len(catalog) == 1 and list(catalog) == [entry]


def test_a_parameter_named_like_a_protocol_field_is_refused() -> None:
    class WithId(BaseModel):
        id: int

    assert problem(params=WithId) == (
        "catalog entry 'count_words': params field 'id' is a protocol field (type, id, progress)"
    )
