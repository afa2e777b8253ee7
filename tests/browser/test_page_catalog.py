"""The page lists the catalog's tasks (GET /tasks) and builds a form for each from its
parameters' JSON Schema, with progress, cancel and the result; against the README's stock worker
and `serve --tasks`, whose catalog has no factorial (so the page hides factorial's form)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from integration.test_catalog_tasks import Wordcount, wordcount

from .test_page import NewPage, browser, expect_state, expect_status, expect_text, new_page

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = ["browser", "new_page", "wordcount"]  # the fixtures


def open_catalog_page(new_page: NewPage, wordcount: Wordcount) -> Page:
    page = new_page()
    page.goto(wordcount[0].replace("ws://", "http://"))
    expect_status(page, "open")
    page.locator('form.call-form[data-task="explode"]').wait_for()
    return page


def test_page_builds_a_form_per_catalog_task_and_shows_a_dict_result(
    new_page: NewPage, wordcount: Wordcount
) -> None:
    page = open_catalog_page(new_page, wordcount)
    tasks = page.locator("form.call-form").evaluate_all("(forms) => forms.map((f) => f.dataset.task)")
    assert tasks == ["count_words", "slow_count", "explode"]
    assert page.locator("#factorial-form").is_hidden()  # not in this catalog
    form = page.locator('form.call-form[data-task="count_words"]')
    form.locator('input[name="text"]').fill("a b a")
    form.locator("button").click()
    row = page.locator('.task[data-subject="count_words"]')
    expect_state(row, "done")
    assert '"a": 2' in row.locator(".result").inner_text()


def test_page_shows_progress_and_cancels_a_catalog_task(new_page: NewPage, wordcount: Wordcount) -> None:
    page = open_catalog_page(new_page, wordcount)
    form = page.locator('form.call-form[data-task="slow_count"]')
    form.locator('input[name="n"]').fill("100")
    form.locator("button").click()
    row = page.locator('.task[data-subject="slow_count"]')
    expect_state(row, "progress")
    assert " / 100" in row.locator(".ahead").inner_text()
    row.locator("button.cancel").click()
    expect_state(row, "cancelled")


def test_page_shows_a_raising_tasks_error_and_a_bad_parameter(
    new_page: NewPage, wordcount: Wordcount
) -> None:
    page = open_catalog_page(new_page, wordcount)
    page.locator('form.call-form[data-task="explode"] button').click()
    row = page.locator('.task[data-subject="explode"]')
    expect_state(row, "error")
    expect_text(row.locator(".error-text"), "Task failed: ValueError")
    page.locator('form.call-form[data-task="count_words"] button').click()  # no text
    bad = page.locator('.task[data-subject="count_words"]')
    expect_state(bad, "error")
    expect_text(bad.locator(".error-text"), "Invalid request: text: Field required")
