"""Exposing a user's own Celery tasks, exactly as the README says: its stock worker command
(`celery -A examples.wordcount.tasks worker ...`, an app that does not import factorial-ws) and
`factorial-ws serve --tasks examples.wordcount.catalog:catalog`; then every reply a client of a
catalog task gets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from factorial_ws.constants import STORED_BYTES_KEY_PREFIX
from factorial_ws.supervisor.probes import free_port, port_open
from peers import Client, client
from support import REPO, UNIT_S, Launcher, Proc, process_env, wait_until

BIN = Path(sys.executable).parent  # the virtualenv's celery and factorial-ws, as when it is active
README = REPO / "README.md"
Wordcount = tuple[str, Proc, str]  # the gateway's URL, the stock worker, Redis' URL
PROGRESS_PER_S = 4
KILLED_AT_THE_END: dict[str, Any] = {"stop_signal": signal.SIGKILL, "together": True}


def readme_command(starts_with: str) -> list[str]:
    """The one command of the README's "Expose your own Celery tasks" that starts so."""
    section = README.read_text().split("## Expose your own Celery tasks", 1)[1].split("\n## ", 1)[0]
    found = [line.strip() for line in section.splitlines() if line.startswith("    " + starts_with)]
    assert len(found) == 1, f"the README's section shows no single command starting {starts_with!r}"
    return found[0].split()


@pytest.fixture(scope="module")
def wordcount(module_launch: Launcher) -> Wordcount:
    """Redis, the README's stock worker and gateway: the gateway's URL, the worker, Redis' URL.
    Both are killed at the end, together, as ``Launcher.worker`` and ``gateway`` do: no test
    here is about their shutdown, and a warm one costs seconds."""
    port = free_port()
    redis_url = module_launch.redis().url
    env = process_env(redis_url, WS_HOST="127.0.0.1", WS_PORT=port, PROGRESS_PER_S=PROGRESS_PER_S)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    worker = module_launch.process("worker", readme_command("celery -A "), env, **KILLED_AT_THE_END)
    gateway = module_launch.process(
        "gateway", readme_command("factorial-ws serve "), env, **KILLED_AT_THE_END
    )
    wait_until(lambda: " ready." in worker.log(), what="the stock Celery worker", watch=[worker])
    wait_until(lambda: port_open(port), what="factorial-ws serve --tasks", watch=[gateway])
    return f"ws://127.0.0.1:{port}/", worker, redis_url


async def replies_until_final(ws: Client, timeout_s: float = 15 * UNIT_S) -> list[dict[str, Any]]:
    """Every reply up to the first success or error."""
    replies = [await ws.recv(timeout_s)]
    while replies[-1]["type"] not in ("success", "error"):
        replies.append(await ws.recv(timeout_s))
    return replies


async def test_a_task_that_returns_a_dict_is_answered_with_that_dict(wordcount: Wordcount) -> None:
    async with client(wordcount[0]) as ws:
        ack = await ws.request({"type": "count_words", "text": "a b a", "id": "r1"})
        done = await ws.recv()
    assert ack == {"type": "result", "task_id": ack["task_id"], "id": "r1"}
    assert done == {"type": "success", "task_id": ack["task_id"], "result": {"a": 2, "b": 1}, "id": "r1"}


async def test_progress_states_reach_a_client_that_asked_coalesced_to_the_rate(
    wordcount: Wordcount,
) -> None:
    steps = 40
    async with client(wordcount[0]) as ws:
        await ws.send({"type": "slow_count", "n": steps, "delay_s": 0.025, "progress": True})
        started_s = time.monotonic()
        replies = await replies_until_final(ws)
        duration_s = time.monotonic() - started_s
    kinds = [reply["type"] for reply in replies]
    assert kinds[:3] == ["result", "queued", "started"], kinds
    assert kinds[-1] == "success" and replies[-1]["result"] == {"counted": steps}
    progress = [reply for reply in replies if reply["type"] == "progress"]
    assert progress, kinds
    assert all(reply["state"] == "PROGRESS" and reply["info"]["total"] == steps for reply in progress)
    # 40 states in about a second: at most PROGRESS_PER_S a second reach the client (one more
    # for the first, sent at once), each the latest at its time, so they only go forward.
    assert len(progress) <= 1 + duration_s * PROGRESS_PER_S + 1, (len(progress), duration_s)
    currents = [reply["info"]["current"] for reply in progress]
    assert currents == sorted(currents) and len(set(currents)) == len(currents)
    assert len(progress) < steps


async def test_progress_states_are_not_sent_to_a_client_that_did_not_ask(wordcount: Wordcount) -> None:
    async with client(wordcount[0]) as ws:
        await ws.send({"type": "slow_count", "n": 5, "delay_s": 0.02})
        kinds = [reply["type"] for reply in await replies_until_final(ws)]
    assert kinds == ["result", "success"]


async def test_a_task_that_raises_is_named_by_its_exception_type_only(wordcount: Wordcount) -> None:
    async with client(wordcount[0]) as ws:
        ack = await ws.request({"type": "explode"})
        failed = await ws.recv()
    assert failed == {"type": "error", "result": "Task failed: ValueError", "task_id": ack["task_id"]}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "count_words", "txt": "a"}, "Invalid request: text: Field required"),
        (
            {"type": "count_words", "text": "a", "txt": "a"},
            "Invalid request: txt: Extra inputs are not permitted",
        ),
        ({"type": "slow_count", "n": 0}, "Invalid request: n: Input should be greater than or equal to 1"),
        ({"type": "sum", "a": 1}, "Unknown task"),
        ({"type": "factorial", "number": 5}, "Unknown task"),  # not in this catalog
    ],
)
async def test_bad_parameters_and_unknown_types_get_one_error_and_the_connection_goes_on(
    wordcount: Wordcount, message: dict[str, Any], expected: str
) -> None:
    async with client(wordcount[0]) as ws:
        assert await ws.request({**message, "id": 3}) == {"type": "error", "result": expected, "id": 3}
        ack = await ws.request({"type": "count_words", "text": "still here"})
        assert (await ws.recv())["result"] == {"still": 1, "here": 1}
        assert ack["type"] == "result"


async def test_a_catalog_task_is_looked_up_by_id_running_and_done(wordcount: Wordcount) -> None:
    async with client(wordcount[0]) as ws:
        ack = await ws.request({"type": "slow_count", "n": 10, "delay_s": 0.1})
        task_id = ack["task_id"]
        async with client(wordcount[0]) as other:
            assert await other.request({"type": "result", "task_id": task_id}) == {
                "type": "pending",
                "task_id": task_id,
            }
            assert await other.recv() == {"type": "success", "task_id": task_id, "result": {"counted": 10}}
            # Done: the stored result, at once.
            assert await other.request({"type": "result", "task_id": task_id}) == {
                "type": "success",
                "task_id": task_id,
                "result": {"counted": 10},
            }
        assert (await ws.recv())["type"] == "success"


async def test_a_lookup_with_progress_hears_the_tasks_own_states(wordcount: Wordcount) -> None:
    async with client(wordcount[0]) as ws:
        ack = await ws.request({"type": "slow_count", "n": 20, "delay_s": 0.1})
        async with client(wordcount[0]) as other:
            await other.send({"type": "result", "task_id": ack["task_id"], "progress": True})
            kinds = [reply["type"] for reply in await replies_until_final(other)]
    assert kinds[0] == "pending" and "progress" in kinds and kinds[-1] == "success", kinds


async def test_a_running_catalog_task_is_cancelled(wordcount: Wordcount) -> None:
    async with client(wordcount[0]) as ws:
        await ws.send({"type": "slow_count", "n": 100, "delay_s": 0.1, "progress": True, "id": 1})
        replies = [await ws.recv() for _ in range(3)]  # result, queued, started
        assert [reply["type"] for reply in replies] == ["result", "queued", "started"]
        task_id = replies[0]["task_id"]
        await ws.send({"type": "cancel", "task_id": task_id, "id": 2})
        ending = [await ws.recv()]
        while ending[-1].get("id") != 2:
            ending.append(await ws.recv())
    ends = [reply for reply in ending if reply["type"] != "progress"]
    assert ends == [
        {"type": "error", "result": "Task cancelled", "task_id": task_id, "id": 1},
        {"type": "cancelled", "task_id": task_id, "id": 2},
    ]


async def test_identical_requests_share_a_computation_only_where_the_entry_allows(
    wordcount: Wordcount,
) -> None:
    text = f"shared {time.time()}"
    async with client(wordcount[0]) as ws:
        first = await ws.request({"type": "count_words", "text": text})
        await ws.recv()
        second = await ws.request({"type": "count_words", "text": text})
        assert (await ws.recv())["type"] == "success"
        assert second["task_id"] == first["task_id"]  # count_words: share_results=True
        third = await ws.request({"type": "slow_count", "n": 1, "delay_s": 0})
        await ws.recv()
        fourth = await ws.request({"type": "slow_count", "n": 1, "delay_s": 0})
        await ws.recv()
        assert third["task_id"] != fourth["task_id"]  # slow_count: not shared


def test_get_tasks_lists_the_catalog_with_each_tasks_json_schema(wordcount: Wordcount) -> None:
    url = wordcount[0].replace("ws://", "http://") + "tasks"
    with urllib.request.urlopen(url, timeout=10 * UNIT_S) as reply:
        tasks = json.loads(reply.read())
    assert list(tasks) == ["count_words", "slow_count", "explode"]
    assert tasks["count_words"]["params"]["required"] == ["text"]
    assert tasks["slow_count"]["params"]["properties"]["n"]["maximum"] == 100
    assert tasks["explode"]["params"]["properties"] == {}


def test_the_worker_is_a_stock_celery_worker_of_an_app_that_does_not_import_factorial_ws(
    wordcount: Wordcount,
) -> None:
    tasks_source = (REPO / "examples" / "wordcount" / "tasks.py").read_text()
    assert not re.search(r"^\s*(from|import) factorial_ws", tasks_source, re.MULTILINE)
    assert readme_command("celery -A ")[:4] == ["celery", "-A", "examples.wordcount.tasks", "worker"]
    assert "[tasks]" in wordcount[1].log() and "wordcount.count_words" in wordcount[1].log()


async def test_many_requests_in_flight_on_one_connection_all_get_their_result(
    wordcount: Wordcount,
) -> None:
    async with client(wordcount[0]) as ws:
        for index in range(20):
            await ws.send({"type": "count_words", "text": f"w{index} x", "id": index})
        replies = [await ws.recv() for _ in range(40)]
    results = {reply["id"]: reply["result"] for reply in replies if reply["type"] == "success"}
    assert results == {index: {f"w{index}": 1, "x": 1} for index in range(20)}
    await asyncio.sleep(0)


# --- the client library ----------------------------------------------------------------------


async def test_client_call_returns_the_result_and_raises_the_tasks_failure(
    wordcount: Wordcount,
) -> None:
    from factorial_ws import Client, InvalidRequest, TaskFailed, UnknownTask

    async with Client(wordcount[0]) as ws:
        assert await ws.call("count_words", text="to be or not to be") == {
            "to": 2,
            "be": 2,
            "or": 1,
            "not": 1,
        }
        with pytest.raises(TaskFailed, match=r"^Task failed: ValueError "):
            await ws.call("explode")
        with pytest.raises(InvalidRequest, match=r"^Invalid request: text: Field required"):
            await ws.call("count_words")
        with pytest.raises(UnknownTask):
            await ws.call("no_such_task")


async def test_client_call_handle_follows_progress_and_cancels(wordcount: Wordcount) -> None:
    from factorial_ws import Client, TaskCancelled

    async with Client(wordcount[0]) as ws:
        handle = await ws.submit_call("slow_count", n=8, delay_s=0.05, progress=True)
        states = [state async for state in handle.states()]
        assert await handle == {"counted": 8}
        assert states[0] == "pending" and "progress" in states and states[-1] == "done", states
        assert handle.info["total"] == 8

        long = await ws.submit_call("slow_count", n=100, delay_s=0.1)
        assert await long.cancel() is True
        with pytest.raises(TaskCancelled):
            await long


async def test_a_catalog_tasks_stored_result_is_charged_to_its_requester(wordcount: Wordcount) -> None:
    def charged() -> int:
        with redis.Redis.from_url(wordcount[2]) as store:
            return sum(int(size) for size in store.hvals(STORED_BYTES_KEY_PREFIX + "127.0.0.1"))

    before = charged()
    text = " ".join(f"word{index}" for index in range(2000))  # a result of about 29 kB
    async with client(wordcount[0]) as ws:
        await ws.request({"type": "count_words", "text": text})
        result = (await ws.recv())["result"]
    assert len(result) == 2000
    assert charged() - before >= len(json.dumps(result))


def test_metrics_count_requests_by_task_name(wordcount: Wordcount) -> None:
    url = wordcount[0].replace("ws://", "http://") + "metrics"
    with urllib.request.urlopen(url, timeout=10 * UNIT_S) as reply:
        text = reply.read().decode()
    assert re.search(r'^factorial_ws_requests_total\{type="count_words"\} [1-9]', text, re.MULTILINE)
    assert re.search(r'^factorial_ws_tasks_submitted_total\{queue="wordcount"\} [1-9]', text, re.MULTILINE)
    assert 'factorial_ws_errors_total{message="Task failed: ValueError"}' in text


async def test_a_request_waits_its_entrys_timeout_then_gets_timeout_error(
    wordcount: Wordcount, module_launch: Launcher, tmp_path: Path
) -> None:
    (tmp_path / "short_catalog.py").write_text(
        "from examples.wordcount.catalog import SlowCountParams\n"
        "from factorial_ws import Catalog\n"
        "catalog = Catalog()\n"
        "catalog.add('slow_count', celery_task='wordcount.slow_count', params=SlowCountParams,\n"
        "            queue='wordcount', timeout=1)\n"
    )
    port = free_port()
    env = process_env(wordcount[2], WS_HOST="127.0.0.1", WS_PORT=port, TASKS="short_catalog:catalog")
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{REPO}"
    gateway = module_launch.process(
        "short-gateway", [str(BIN / "factorial-ws"), "serve"], env, **KILLED_AT_THE_END
    )
    wait_until(lambda: port_open(port), what="a gateway of a 1 s timeout", watch=[gateway])
    async with client(f"ws://127.0.0.1:{port}/") as ws:
        ack = await ws.request({"type": "slow_count", "n": 40, "delay_s": 0.1})
        started_s = time.monotonic()
        timed_out = await ws.recv()
        waited_s = time.monotonic() - started_s
    assert timed_out == {"type": "error", "result": "Timeout error", "task_id": ack["task_id"]}
    assert waited_s < 3 * UNIT_S  # its entry's 1 s (to the next second), not HARD_TASK_TIMEOUT's 60
