"""The browser client module (/client.js) calls catalog tasks: `client.call(name, params)` gives
the task's JSON result, a raising task rejects as TaskFailed, and `submitCall` with progress
follows the task's own states; against the README's stock worker and `serve --tasks`."""

from __future__ import annotations

from typing import Any

from integration.test_catalog_tasks import Wordcount, wordcount

from .test_client_js import run_in_page
from .test_page import NewPage, browser, new_page

__all__ = ["browser", "new_page", "wordcount"]  # the fixtures

CALLS = """async () => {
    const client = window.client;
    const counts = await client.call("count_words", { text: "a b a" });
    const failed = await client.call("explode").catch((e) => [e.name, e.message]);
    const invalid = await client.call("count_words", {}).catch((e) => [e.name, e.message]);
    const job = client.submitCall("slow_count", { n: 6, delay_s: 0.05 }, { progress: true });
    const states = [];
    job.addEventListener("statechange", () => states.push([job.state, job.info]));
    const counted = await job.result;
    return { counts, failed, invalid, counted, states, taskId: job.taskId };
}"""


def test_client_js_calls_catalog_tasks_with_results_errors_and_progress(
    new_page: NewPage, wordcount: Wordcount
) -> None:
    url = wordcount[0].replace("ws://", "http://")
    found: dict[str, Any] = run_in_page(new_page, url, {}, CALLS)
    assert found["counts"] == {"a": 2, "b": 1}
    assert found["failed"] == ["TaskFailed", "Task failed: ValueError"]
    assert found["invalid"] == ["InvalidRequest", "Invalid request: text: Field required"]
    assert found["counted"] == {"counted": 6}
    states = [state for state, _ in found["states"]]
    assert states[0] == "pending" and "progress" in states and states[-1] == "done", states
    infos = [info for state, info in found["states"] if state == "progress"]
    assert all(info["total"] == 6 for info in infos)
