"""The page at / in a real browser: Debian's Chromium, headless, driven by Playwright.

Nothing downloads a browser: Playwright only drives /usr/bin/chromium (`make browser-deps`
installs it). Without it the tests skip locally, and fail under CI, which must run them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from websockets.sync.client import connect

from factorial_ws.supervisor.probes import free_port, port_open
from factorial_ws.supervisor.redis_server import RedisServer
from support import PYTHON, REPLY_TIMEOUT_S, UNIT_S, Launcher, System, paused, process_env, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
UI_TIMEOUT_MS = 30_000 * UNIT_S
TOKEN = "page-token"
CLIPBOARD = ["clipboard-read", "clipboard-write"]


def _missing() -> str | None:
    if not shutil.which(CHROMIUM):
        return f"{CHROMIUM} is not installed (run `make browser-deps` as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    problem = _missing()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with (
        sync_playwright() as playwright,
        playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS) as chromium,
    ):
        yield chromium


NewPage = Callable[[], "Page"]
OpenPage = Callable[[str], "Page"]


@pytest.fixture
def new_page(browser: Browser) -> Iterator[NewPage]:
    """Makes blank pages, each in a browser context of its own; closes them all when the test
    ends."""
    contexts: list[BrowserContext] = []

    def new() -> Page:
        context = browser.new_context(accept_downloads=True, permissions=CLIPBOARD)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        return page

    yield new
    for context in contexts:
        context.close()


@pytest.fixture
def open_page(new_page: NewPage) -> OpenPage:
    """Opens the page at a gateway's URL (with its query), once its WebSocket is connected."""

    def open_at(url: str) -> Page:
        page = new_page()
        page.goto(url.replace("ws://", "http://"))
        expect_status(page, "open")
        return page

    return open_at


@pytest.fixture
def page(open_page: OpenPage, system: System) -> Page:
    return open_page(system.url)


def expect_status(page: Page, state: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_have_attribute("data-state", state, timeout=UI_TIMEOUT_MS)


def submit_number(page: Page, number: str) -> Locator:
    """Type a number and press Enter; the row of that task."""
    page.fill("#number-input", number)
    page.press("#number-input", "Enter")
    return page.locator(f'.task[data-subject="{number}"]')


def expect_state(row: Locator, state: str) -> None:
    from playwright.sync_api import expect

    expect(row).to_have_attribute("data-state", state, timeout=UI_TIMEOUT_MS)


def expect_text(locator: Locator, text: str) -> None:
    from playwright.sync_api import expect

    expect(locator).to_have_text(text, timeout=UI_TIMEOUT_MS)


def test_page_shows_a_small_factorial_submitted_with_enter(page: Page) -> None:
    row = submit_number(page, "10")

    expect_state(row, "done")
    assert row.locator(".result").inner_text() == "3628800"
    assert row.locator(".digits").inner_text() == "7 digits"
    assert len(row.get_attribute("data-task-id") or "") == 36
    assert row.locator(".elapsed").inner_text().endswith(("ms", "s"))


def test_page_of_the_built_in_catalog_shows_factorials_forms_alone(page: Page) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#factorial-form")).to_be_visible()
    expect(page.locator("#lookup-form")).to_be_visible()
    expect(page.locator("html")).to_have_attribute(
        "data-tasks", "factorial", timeout=UI_TIMEOUT_MS
    )  # GET /tasks read
    assert page.locator("#catalog").is_hidden()  # GET /tasks lists factorial alone
    assert page.locator("#catalog-tabs button").count() == 0
    assert page.locator("h1").inner_text().startswith("Factorials")


def test_page_shortens_a_huge_result_with_its_digit_count_and_downloads_it_whole(page: Page) -> None:
    row = submit_number(page, "5000")

    expect_state(row, "done")
    assert row.locator(".digits").inner_text() == "16,326 digits"
    shown = row.locator(".result").inner_text()
    expected = str(math.factorial(5000))
    assert len(shown) < 100 and "…" in shown
    assert expected.startswith(shown.split("…")[0]) and expected.endswith(shown.split("…")[1])
    with page.expect_download() as download:
        row.locator("button.download").click()
    assert Path(download.value.path()).read_text().strip() == expected
    row.locator("button.copy").click()
    expect_text(row.locator(".copied"), "Copied")
    assert page.evaluate("navigator.clipboard.readText()") == expected


def test_page_shows_a_refused_number_plainly(page: Page) -> None:
    row = submit_number(page, "-1")

    expect_state(row, "error")
    assert row.locator(".error-text").inner_text() == "Invalid request: 'number' must not be negative"


def test_page_looks_up_a_pasted_task_id(page: Page, system: System) -> None:
    # Playwright's sync API runs its own event loop in this thread: a plain blocking client.
    with connect(system.url) as ws:
        ws.send(json.dumps({"type": "factorial", "number": 20}))
        task_id = json.loads(ws.recv(timeout=REPLY_TIMEOUT_S))["task_id"]
        assert json.loads(ws.recv(timeout=REPLY_TIMEOUT_S))["type"] == "success"

    page.fill("#task-id-input", task_id)
    page.press("#task-id-input", "Enter")
    row = page.locator(f'.task[data-kind="lookup"][data-task-id="{task_id}"]')

    expect_state(row, "done")
    assert row.locator(".result").inner_text() == str(math.factorial(20))


def test_page_reconnects_after_a_gateway_restart_and_still_gets_its_waiting_task(
    launch: Launcher, redis_server: RedisServer, open_page: OpenPage
) -> None:
    port = free_port()  # the gateway comes back on the same port, with the same token
    # The hard worker starts beside the gateway, then stays frozen until the new gateway has
    # looked the task up: till then the task waits in its queue, as with no worker at all.
    hard, (old, url) = launch.side_by_side(
        lambda: launch.worker(redis_server.url, queues="hard", concurrency=1),
        lambda: launch.gateway(redis_server.url, port=port, WS_TOKEN=TOKEN),
    )
    with paused(hard.pid):
        page = open_page(f"{url}?token={TOKEN}")  # the page passes its token on
        row = submit_number(page, "2000")  # the hard queue, whose worker is frozen
        expect_state(row, "queued")  # the page asks for progress: no live worker
        task_id = row.get_attribute("data-task-id")

        old.stop()
        expect_status(page, "closed")
        new, _ = launch.gateway(
            redis_server.url, port=port, name="gateway-again", WS_TOKEN=TOKEN, ACCESS_LOG=1
        )
        expect_status(page, "open")
        wait_until(lambda: "request task_id=" in new.log(), what="the page asking again")

    expect_state(row, "done")
    assert row.get_attribute("data-task-id") == task_id
    assert row.locator(".digits").inner_text() == f"{len(str(math.factorial(2000))):,} digits"
    # The new gateway never saw the factorial request: the page looked the task up by its id.
    assert f"request task_id={task_id} detail=lookup" in new.log()


def test_client_js_loads_as_a_module_in_a_page_of_another_origin_with_exact_results(
    launch: Launcher, system: System, new_page: NewPage, tmp_path: Path
) -> None:
    module_url = system.url.replace("ws://", "http://") + "client.js"
    with urllib.request.urlopen(module_url, timeout=REPLY_TIMEOUT_S) as served:
        assert served.headers["Content-Type"].startswith("text/javascript")
        assert served.headers["Access-Control-Allow-Origin"] == "*"
    # A user's own page, on another origin (another port), that imports the module.
    (tmp_path / "index.html").write_text(
        f'<!doctype html><script type="module">import * as m from "{module_url}"; window.m = m;</script>'
    )
    port = free_port()
    command = [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    server = launch.process("user-page", command, process_env(None))
    wait_until(lambda: port_open(port), what="the user's page server", watch=[server])
    page = new_page()
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_function("window.m !== undefined")
    outcome = page.evaluate(
        """async () => {
            const client = new window.m.FactorialClient();  // the gateway it came from
            const exact = await client.factorial(30);
            const digits = await client.factorial(3000, { digits: true });
            const task = client.submit(25);
            const taskId = await task.accepted;
            const submitted = await task.result;
            const looked = await client.lookup(taskId);
            const refused = await client.factorial(-1).catch((error) => error);
            client.close();
            return [typeof exact, exact.toString(), digits, submitted === looked,
                    taskId.length, refused.name, refused.message];
        }"""
    )
    assert outcome == [
        "bigint",
        str(math.factorial(30)),
        str(math.factorial(3000)),
        True,
        36,
        "InvalidRequest",
        "Invalid request: 'number' must not be negative",
    ]
