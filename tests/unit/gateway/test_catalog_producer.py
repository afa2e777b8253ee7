"""A catalog task's message is the one apply_async sends for the task its entry names (its
parameters as keyword arguments, its queue, its time limits), and its submission records which
task it is, shares by parameters only where the entry allows, and is found by a lookup."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any, cast

import redis.asyncio as aioredis
from celery import Celery
from kombu import Connection
from kombu.transport.virtual import Channel, Message
from pydantic import BaseModel

from factorial_ws import Catalog
from factorial_ws.constants import CLIENT_BUSY, SUBMITTED_KEY_PREFIX
from factorial_ws.gateway.messages import Call, CallEnvelopes, call_envelope
from factorial_ws.gateway.producer import Accepted, Producer, Refused, Rules
from factorial_ws.gateway.results import ResultHub
from factorial_ws.gateway.stored_tasks import catalog_task_of

TASK_ID = "2f1e0b4c-9a8d-4e7f-8c6b-5a4d3c2b1a09"
OTHER_ID = "3f1e0b4c-9a8d-4e7f-8c6b-5a4d3c2b1a09"


class Words(BaseModel):
    text: str


def words_call(*, share: bool = False, **limits: Any) -> Call:
    catalog = Catalog()
    entry = catalog.add(
        "count_words",
        celery_task="app.count_words",
        params=Words,
        queue=lambda params: "long" if len(params.text) > 5 else "words",
        timeout=5,
        share_results=share,
        cost=lambda params: len(params.text),
        **limits,
    )
    return Call.of(entry, entry.validate({"text": "a b a"}))


def envelope(app: Celery, call: Call, **options: Any) -> dict[str, Any]:
    payload = json.loads(call_envelope(app, TASK_ID, call, **options))
    assert isinstance(payload, dict)
    return payload


def test_a_call_is_what_its_entry_makes_of_the_parameters() -> None:
    call = words_call(share=True)
    assert (call.name, call.celery_task, call.queue, call.cost) == (
        "count_words",
        "app.count_words",
        "words",
        5,
    )
    assert call.kwargs == {"text": "a b a"}
    assert call.share_key == 'count_words:{"text":"a b a"}'
    assert words_call().share_key is None


def test_the_message_names_the_task_and_carries_the_parameters_as_keyword_arguments(app: Celery) -> None:
    payload = envelope(app, words_call())
    assert payload["headers"]["task"] == "app.count_words"
    assert payload["headers"]["id"] == TASK_ID
    args, kwargs, _ = json.loads(base64.b64decode(payload["body"]))
    assert (args, kwargs) == ([], {"text": "a b a"})
    assert payload["properties"]["delivery_info"] == {"exchange": "", "routing_key": "words"}


def test_the_time_limits_go_with_the_message_as_apply_async_sends_them(app: Celery) -> None:
    headers = envelope(app, words_call(soft_time_limit=3, time_limit=4))["headers"]
    assert headers["timelimit"] == [4.0, 3.0]
    assert envelope(app, words_call())["headers"]["timelimit"] == [None, None]


def test_kombu_decodes_a_catalog_message(app: Celery) -> None:
    with Connection("memory://") as connection:
        message = Message(envelope(app, words_call()), channel=cast(Channel, connection.channel()))
        assert message.decode()[1] == {"text": "a b a"}
        assert message.headers["task"] == "app.count_words"


async def test_a_submitted_call_is_queued_and_recorded_as_its_catalog_task(
    app: Celery, client: aioredis.Redis
) -> None:
    accepted = await Producer(app, client, 600).submit_call(TASK_ID, words_call(), "127.0.0.1")
    assert accepted.task_id == TASK_ID  # type: ignore[union-attr]
    assert await client.llen("words") == 1
    record = await client.get(SUBMITTED_KEY_PREFIX + TASK_ID)
    assert catalog_task_of(record) == "count_words"


async def test_identical_calls_share_a_task_only_when_the_entry_shares_results(
    app: Celery, client: aioredis.Redis
) -> None:
    producer = Producer(app, client, 600, rules=Rules(reuse=True))
    await producer.submit_call(TASK_ID, words_call(), "127.0.0.1")
    alone = await producer.submit_call(OTHER_ID, words_call(), "127.0.0.1")
    assert alone.task_id == OTHER_ID  # type: ignore[union-attr]

    first = await producer.submit_call("4f1e0b4c-9a8d-4e7f-8c6b-5a4d3c2b1a09", words_call(share=True), "h")
    joined = await producer.submit_call("5f1e0b4c-9a8d-4e7f-8c6b-5a4d3c2b1a09", words_call(share=True), "h")
    assert joined.task_id == first.task_id and joined.state == "pending"  # type: ignore[union-attr]


async def test_a_lookup_learns_the_catalog_task_from_the_record(app: Celery, client: aioredis.Redis) -> None:
    await Producer(app, client, 600).submit_call(TASK_ID, words_call(), "127.0.0.1")
    await Producer(app, client, 600).submit(OTHER_ID, "soft", 5, "127.0.0.1")
    hub = ResultHub(client, client)
    assert (await hub.stored.look(TASK_ID))[1] == "count_words"
    assert (await hub.stored.look(OTHER_ID))[1] is None
    await client.set("celery-task-meta-" + TASK_ID, json.dumps({"status": "SUCCESS", "result": {"a": 2}}))
    snapshot, _ = await hub.stored.look(TASK_ID)
    assert snapshot.json_text == '{"a": 2}'  # type: ignore[union-attr]


async def test_a_catalog_tasks_cost_counts_in_its_queues_budgets(app: Celery, client: aioredis.Redis) -> None:
    # words_call costs 5 (the text's length): an address with 10 queued is refused more.
    producer = Producer(app, client, 600, rules=Rules(queue_max_cost=100, queue_cost_per_client=10))
    ids = [f"{index:08d}-9a8d-4e7f-8c6b-5a4d3c2b1a09" for index in range(4)]
    answers = [await producer.submit_call(task_id, words_call(), "10.0.0.1") for task_id in ids[:3]]
    assert [type(answer).__name__ for answer in answers] == ["Accepted", "Accepted", "Refused"]
    assert answers[2] == Refused(CLIENT_BUSY)
    # Another address has a budget of its own; once a worker takes a task, its cost is free again.
    assert isinstance(await producer.submit_call(ids[3], words_call(), "10.0.0.2"), Accepted)
    await client.rpop("words")
    assert isinstance(await producer.submit_call(ids[2], words_call(), "10.0.0.1"), Accepted)


async def test_factorials_queues_keep_their_own_budgets(app: Celery, client: aioredis.Redis) -> None:
    producer = Producer(app, client, 600, rules=Rules(queue_max_cost=1, queue_cost_per_client=1))
    ids = [f"{index:08d}-9a8d-4e7f-8c6b-5a4d3c2b1a09" for index in range(3)]
    answers = [await producer.submit(task_id, "soft", 5, "10.0.0.1") for task_id in ids]
    assert all(isinstance(answer, Accepted) for answer in answers)


def test_the_templated_envelope_is_the_message_celery_builds(app: Celery) -> None:
    call = words_call(soft_time_limit=3, time_limit=4)
    call = replace(call, kwargs={"text": 'a "quoted" 100% \\ text', "n": [1, {"x": None}]})
    made = json.loads(CallEnvelopes(app, 600).make(TASK_ID, call, True, "10.0.0.1"))
    built = json.loads(
        call_envelope(app, TASK_ID, call, expires_s=600, progress=True, client_host="10.0.0.1")
    )
    assert json.loads(base64.b64decode(made["body"])) == json.loads(base64.b64decode(built["body"]))
    for message in (made, built):
        del message["body"], message["properties"]["delivery_tag"]
        del message["headers"]["expires"], message["headers"]["kwargsrepr"]
    assert made == built
