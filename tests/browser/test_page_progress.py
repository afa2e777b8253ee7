"""The page's progress states and Cancel button in Chromium (issue 13), against a gateway with a
one-process hard worker, so that a second large factorial waits behind the first."""

from __future__ import annotations

from integration.fault_tools import busy_child
from support import Launcher, paused

from .test_page import (
    OpenPage,
    browser,
    expect_state,
    expect_text,
    new_page,
    open_page,
    submit_number,
)

__all__ = ["browser", "new_page", "open_page"]  # the fixtures, shared with the page's tests


def test_page_shows_queued_and_started_and_cancels_with_its_button(
    open_page: OpenPage, launch: Launcher
) -> None:
    redis_url = launch.redis().url
    # The two workers start side by side; the gateway runs in this process (the page only
    # speaks the protocol to it; the worker's log is what is read).
    _, hard = launch.side_by_side(
        lambda: launch.worker(redis_url, queues="soft", concurrency=1),
        lambda: launch.worker(redis_url, queues="hard", concurrency=1),
    )
    url = launch.in_process_gateway(redis_url)
    page = open_page(url)

    running = submit_number(page, "1000000")
    # Frozen as soon as it computes: 1,000,000! takes about a second, and the steps below can
    # take longer in a browser on a busy machine (the task then ended before its Cancel click).
    # Its cancel kills it all the same (SIGKILL).
    with paused(busy_child(hard.pid)):
        expect_state(running, "started")
        waiting = submit_number(page, "900000")
        expect_state(waiting, "queued")
        expect_text(waiting.locator(".ahead"), "1 ahead")

        waiting.locator("button.cancel").click()
        expect_state(waiting, "cancelled")
        expect_text(waiting.locator(".error-text"), "Task cancelled")
        assert waiting.locator("button.cancel").is_hidden()
        running.locator("button.cancel").click()
        expect_state(running, "cancelled")

    small = submit_number(page, "10")
    expect_state(small, "done")
    assert small.locator("button.cancel").is_hidden()
    assert f"Terminating {running.get_attribute('data-task-id')} (9)" in hard.log()
    assert f"[{waiting.get_attribute('data-task-id')}] succeeded" not in hard.log()
