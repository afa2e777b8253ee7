"""The page and /client.js with a catalog of a user's own tasks (issue 19), in Chromium: a stock
Celery worker of examples/wordcount (an app that does not import factorial-ws) and
`factorial-ws serve --tasks examples.wordcount.catalog:catalog`, the README's commands of "Expose
your own Celery tasks" (the integration tests' fixture). The page lists the catalog's tasks,
builds a form from each one's JSON Schema (GET /tasks) and shows each run: its states, its
progress, its result or error, and a Cancel button."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from integration.test_catalog_tasks import Wordcount, wordcount
from support import UNIT_S, System, wait_until

from .test_client_js import run_in_page
from .test_page import (
    UI_TIMEOUT_MS,
    NewPage,
    OpenPage,
    browser,
    expect_state,
    expect_text,
    new_page,
    open_page,
)

pytestmark = pytest.mark.long  # 20 s or more: started first (conftest.py)

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

__all__ = ["browser", "new_page", "open_page", "wordcount"]  # the fixtures, shared with the page's tests


def http_url(wordcount: Wordcount) -> str:
    return wordcount[0].replace("ws://", "http://")


@pytest.fixture
def page(open_page: OpenPage, wordcount: Wordcount) -> Page:
    return open_page(wordcount[0])


def run_task(page: Page, name: str, **fields: str | bool) -> Locator:
    """Pick the task's tab, fill its form's fields and submit it; the row of that run (the
    newest of that task)."""
    page.click(f'#catalog-tabs button[data-task="{name}"]')
    form = page.locator(f'form.call-form[data-task="{name}"]')
    for field, value in fields.items():
        field_input = form.locator(f'[name="{field}"]')
        if isinstance(value, bool):
            field_input.set_checked(value)
        else:
            field_input.fill(value)
    form.locator('button[type="submit"]').click()
    return page.locator(f'.task[data-kind="call"][data-subject="{name}"]').first


def test_page_lists_the_catalogs_tasks_and_builds_a_form_from_each_schema(page: Page) -> None:
    from playwright.sync_api import expect

    tabs = page.locator("#catalog-tabs button")
    expect(tabs).to_have_text(["count_words", "slow_count", "explode"], timeout=UI_TIMEOUT_MS)
    expect(page.locator("#factorial-form")).to_be_hidden()  # not in this catalog
    expect(page.locator('form.call-form[data-task="count_words"]')).to_be_visible()  # the first
    page.click('#catalog-tabs button[data-task="slow_count"]')
    form = page.locator('form.call-form[data-task="slow_count"]')
    expect(form).to_be_visible()
    expect(page.locator('form.call-form[data-task="count_words"]')).to_be_hidden()
    n = form.locator('input[name="n"]')
    assert (n.get_attribute("type"), n.get_attribute("min"), n.get_attribute("max")) == ("number", "1", "100")
    assert n.evaluate("(input) => input.required") is True
    expect(form.locator('label[for="slow_count-n"] .required')).to_have_text("*")
    delay = form.locator('input[name="delay_s"]')
    assert delay.input_value() == "0.1"  # its default
    assert delay.evaluate("(input) => input.required") is False
    expect(form.locator(".field-hint").first).to_have_text("how far to count")


def test_page_runs_a_task_and_shows_its_dict_result_pretty_printed(page: Page) -> None:
    row = run_task(page, "count_words", text="a b a")

    expect_state(row, "done")
    assert json.loads(row.locator(".result").inner_text()) == {"a": 2, "b": 1}
    assert row.locator(".result").inner_text() == json.dumps({"a": 2, "b": 1}, indent=2)
    task_id = row.get_attribute("data-task-id") or ""
    assert len(task_id) == 36

    # The same task, looked up by its id: the same result.
    page.fill("#task-id-input", task_id)
    page.press("#task-id-input", "Enter")
    looked_up = page.locator(f'.task[data-kind="lookup"][data-task-id="{task_id}"]')
    expect_state(looked_up, "done")
    assert json.loads(looked_up.locator(".result").inner_text()) == {"a": 2, "b": 1}


def test_page_shows_the_progress_a_task_reports_then_its_result(page: Page) -> None:
    row = run_task(page, "slow_count", n="12", delay_s="0.2")

    expect_state(row, "progress")
    text = row.locator(".progress-text").inner_text()
    current, total = (int(part) for part in text.split(" / "))
    assert 1 <= current <= 12 and total == 12
    assert row.locator("progress").get_attribute("max") == "12"
    expect_state(row, "done")
    assert json.loads(row.locator(".result").inner_text()) == {"counted": 12}
    assert row.locator("button.cancel").is_hidden()


def test_page_shows_the_error_of_a_task_that_raises(page: Page) -> None:
    row = run_task(page, "explode")

    expect_state(row, "error")
    expect_text(row.locator(".error-text"), "Task failed: ValueError")


def test_page_shows_the_gateways_refusal_of_a_parameter(page: Page) -> None:
    # The browser itself stops what the schema's bounds forbid (min, max, step, required), so
    # a refusal is made here by turning the field into a text one: whatever gets past the form,
    # the gateway's message names the field and the problem.
    page.click('#catalog-tabs button[data-task="slow_count"]')
    page.locator('form.call-form[data-task="slow_count"] input[name="n"]').evaluate(
        "(input) => { input.type = 'text'; input.value = '1.5'; }"
    )
    page.locator('form.call-form[data-task="slow_count"] button[type="submit"]').click()
    row = page.locator('.task[data-kind="call"][data-subject="slow_count"]').first

    expect_state(row, "error")
    assert row.locator(".error-text").inner_text().startswith("Invalid request: n: ")


def test_page_cancels_a_running_task_with_its_button(page: Page, wordcount: Wordcount) -> None:
    row = run_task(page, "slow_count", n="100", delay_s="1")
    expect_state(row, "progress")

    row.locator("button.cancel").click()
    expect_state(row, "cancelled")
    expect_text(row.locator(".error-text"), "Task cancelled")
    assert row.locator("button.cancel").is_hidden()
    task_id = row.get_attribute("data-task-id")
    wait_until(lambda: f"Terminating {task_id}" in wordcount[1].log(), what="the worker stopping the task")


# --- /client.js ---------------------------------------------------------------------------------

CALLS = """async () => {
    const m = await import("/client.js");
    const client = new m.FactorialClient();
    const failure = (promise) => promise.then(
        (value) => ["resolved", value], (error) => [error.name, error.message, error.taskId]);
    const counted = await client.call("count_words", { text: "a b a" });
    const noParams = await failure(client.call("explode"));
    const refused = await failure(client.call("count_words", { txt: "a" }));
    const unknown = await failure(client.call("factorial", { number: 5 }));
    const reserved = await failure(client.call("count_words", { text: "a", id: 3 }));
    const tasks = await client.tasks();
    client.close();
    return { counted, noParams, refused, unknown, reserved, names: Object.keys(tasks),
             required: tasks.slow_count.params.required };
}"""


def test_client_js_call_returns_a_tasks_json_result_and_names_errors_as_python_does(
    new_page: NewPage, wordcount: Wordcount
) -> None:
    page = new_page()
    page.goto(http_url(wordcount) + "healthz")  # any page of the gateway's origin
    outcome = page.evaluate(CALLS)

    assert outcome["counted"] == {"a": 2, "b": 1}
    assert outcome["noParams"][:2] == ["TaskFailed", "Task failed: ValueError"]
    assert len(outcome["noParams"][2]) == 36  # the task id
    assert outcome["refused"][:2] == ["InvalidRequest", "Invalid request: text: Field required"]
    assert outcome["unknown"][:2] == ["UnknownTask", "Unknown task"]
    assert outcome["reserved"][:2] == [
        "InvalidRequest",
        "Invalid request: 'id' is a protocol field, not a parameter",
    ]
    assert outcome["names"] == ["count_words", "slow_count", "explode"]
    assert outcome["required"] == ["n"]


SUBMIT_CALL = """async () => {
    const m = await import("/client.js");
    const client = new m.FactorialClient();
    const task = client.submitCall("slow_count", { n: 6, delay_s: 0.2 }, { progress: true });
    const states = [];
    const infos = [];
    task.addEventListener("statechange", () => {
        states.push(task.state);
        if (task.state === "progress") infos.push([task.progressState, task.info]);
    });
    const taskId = await task.accepted;
    const result = await task.result;
    const stopped = client.submitCall("slow_count", { n: 100, delay_s: 1 }, { progress: true });
    await new Promise((resolve) => stopped.addEventListener("statechange", () => {
        if (stopped.state === "progress") resolve();
    }));
    const cancelled = await stopped.cancel();
    const outcome = await stopped.result.catch((error) => error.name);
    client.close();
    return { taskId, result, states, infos, cancelled, outcome, stoppedState: stopped.state };
}"""


def test_client_js_submit_call_reports_progress_and_cancels(new_page: NewPage, wordcount: Wordcount) -> None:
    page = new_page()
    page.goto(http_url(wordcount) + "healthz")
    outcome = page.evaluate(SUBMIT_CALL)

    assert outcome["result"] == {"counted": 6}
    states = outcome["states"]
    assert states[:3] == ["pending", "queued", "started"] and states[-1] == "done", states
    assert "progress" in states
    for state, info in outcome["infos"]:
        assert state == "PROGRESS" and info["total"] == 6 and 1 <= info["current"] <= 6
    assert (outcome["cancelled"], outcome["outcome"], outcome["stoppedState"]) == (
        True,
        "TaskCancelled",
        "cancelled",
    )


PARSE = """async () => {
    const m = await import("/client.js");
    const progress = m.parseReply('{"type": "progress", "task_id": "t", "state": "PROGRESS", '
        + '"info": {"result": 5, "total": 9}, "id": 1}');
    const nested = m.parseReply('{"type": "success", "task_id": "t", "result": {"result": 7}, "id": 2}');
    const exact = m.parseReply('{"type": "success", "task_id": "t", '
        + '"result": 265252859812191058636308480000000, "id": 3}');
    return [progress.result === undefined, progress.info, nested.result, exact.result];
}"""


def test_client_js_reads_a_result_key_inside_a_tasks_json_as_json(
    new_page: NewPage, wordcount: Wordcount
) -> None:
    page = new_page()
    page.goto(http_url(wordcount) + "healthz")

    assert page.evaluate(PARSE) == [
        True,
        {"result": 5, "total": 9},
        {"result": 7},
        "265252859812191058636308480000000",
    ]


# The same calls through a client a page's own script makes (window.client, made by
# test_client_js.py's loader), on this file's wordcount system.
WINDOW_CLIENT_CALLS = """async () => {
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
    found: dict[str, Any] = run_in_page(new_page, http_url(wordcount), {}, WINDOW_CLIENT_CALLS)
    assert found["counts"] == {"a": 2, "b": 1}
    assert found["failed"] == ["TaskFailed", "Task failed: ValueError"]
    assert found["invalid"] == ["InvalidRequest", "Invalid request: text: Field required"]
    assert found["counted"] == {"counted": 6}
    states = [state for state, _ in found["states"]]
    assert states[0] == "pending" and "progress" in states and states[-1] == "done", states
    infos = [info for state, info in found["states"] if state == "progress"]
    assert all(info["total"] == 6 for info in infos)


# --- forms from any schema ------------------------------------------------------------------------


class Everything(BaseModel):
    """Parameters of every kind a form has a field for (pydantic's own JSON Schema of them)."""

    model_config = ConfigDict(extra="forbid")

    flag: bool = False
    count: int = Field(ge=0)
    ratio: float = 0.5
    mode: Literal["fast", "exact"] = "exact"
    label: str | None = None
    tags: list[str] = []


def test_page_builds_typed_fields_from_any_schema_and_sends_exact_parameters(
    new_page: NewPage, system: System
) -> None:
    """A catalog with factorial and a task of every field type (GET /tasks answered here): the
    factorial form stays, the task gets a tab, and its form sends each parameter as its type
    says: a checkbox's boolean, an integer past 2**53 exact, an enum's value, an optional field
    left empty left out, JSON as JSON."""
    from playwright.sync_api import Route, WebSocket, expect

    catalog = {
        "factorial": {"params": {"properties": {"number": {"type": "integer"}}}, "timeout": 60.0},
        "everything": {"params": Everything.model_json_schema(), "timeout": 5.0, "share_results": False},
    }
    sent: list[str] = []

    def on_websocket(ws: WebSocket) -> None:
        ws.on("framesent", lambda frame: sent.append(str(frame)))

    def serve_catalog(route: Route) -> None:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(catalog))

    page = new_page()
    page.on("websocket", on_websocket)
    page.route("**/tasks", serve_catalog)
    page.goto(system.url.replace("ws://", "http://"))
    expect(page.locator("#catalog-tabs button")).to_have_text(["everything"], timeout=UI_TIMEOUT_MS)
    expect(page.locator("#factorial-form")).to_be_visible()
    form = page.locator('form.call-form[data-task="everything"]')
    kinds = form.locator(".field").evaluate_all("(fields) => fields.map((f) => f.dataset.kind)")
    assert kinds == ["boolean", "integer", "number", "enum", "string", "json"]
    assert form.locator('select[name="mode"]').evaluate("(s) => s.selectedOptions[0].text") == "exact"
    assert form.locator('input[name="ratio"]').input_value() == "0.5"
    assert form.locator(".required").count() == 1  # count alone

    form.locator('input[name="flag"]').check()
    form.locator('input[name="count"]').fill("12345678901234567890")
    form.locator('select[name="mode"]').select_option(label="fast")
    form.locator('[name="tags"]').fill('["a", "b"]')
    form.locator('button[type="submit"]').click()
    row = page.locator('.task[data-kind="call"][data-subject="everything"]')

    expect_state(row, "error")  # the gateway's catalog has no such task
    expect_text(row.locator(".error-text"), "Unknown task")
    calls = [json.loads(frame) for frame in sent if '"everything"' in frame]
    assert calls == [
        {
            "type": "everything",
            "flag": True,
            "count": 12345678901234567890,
            "ratio": 0.5,
            "mode": "fast",
            "tags": ["a", "b"],
            "id": calls[0]["id"],
            "progress": True,
        }
    ]


TOO_LARGE = """async (waitMs) => {
    const m = await import("/client.js");
    const client = new m.FactorialClient(null, { reconnectDelaysMs: [100] });
    const big = client.call("count_words", { text: "x ".repeat(40000) }).then(
        (value) => ["resolved", value], (error) => [error.name, error.message]);
    const small = client.call("count_words", { text: "a b a" });
    const timer = new Promise((resolve) => setTimeout(() => resolve(["still waiting"]), waitMs));
    const outcome = await Promise.race([big, timer]);
    const other = await Promise.race([small, timer]);
    client.close();
    return [outcome, other];
}"""


def test_client_js_fails_a_request_larger_than_the_gateway_takes_instead_of_resending_it(
    new_page: NewPage, wordcount: Wordcount
) -> None:
    """The gateway closes the connection (1009) on a frame over WS_MAX_MESSAGE_BYTES (64 KiB,
    though count_words' text may have a million characters): that request fails, and is not
    sent again on every reconnection; the others go on."""
    page = new_page()
    page.goto(http_url(wordcount) + "healthz")

    outcome, other = page.evaluate(TOO_LARGE, 10_000 * UNIT_S)

    assert outcome == ["RequestTooLarge", "Request too large"]
    assert other == {"a": 2, "b": 1}
