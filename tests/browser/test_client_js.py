"""The browser client module (/client.js) in Chromium against real gateways, beyond the page's
own tests (test_page.py): its pacing under a gateway's rate limit, and how it recovers when
refused anyway."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from typing import Any

import pytest

from integration.fault_tools import metric
from support import Launcher, System

from .test_page import NewPage, browser, new_page

__all__ = ["browser", "new_page"]  # the fixtures, shared with the page's tests

# A page on the gateway that imported the module and holds a client in window.client.
LOAD_CLIENT = """async (options) => {
    const m = await import("/client.js");
    window.serverErrors = [];
    window.client = new m.FactorialClient(null, options);
    window.client.addEventListener("servererror", (e) => window.serverErrors.push(e.detail.message));
}"""


def run_in_page(new_page: NewPage, http_url: str, options: dict[str, Any], script: str) -> Any:
    page = new_page()
    page.goto(http_url + "healthz")  # any page of the gateway's origin
    page.evaluate(LOAD_CLIENT, options)
    return page.evaluate(script)


BURST = """async () => {
    const started = performance.now();
    const results = await Promise.all(
        Array.from({ length: 30 }, (_, k) => window.client.factorial(k + 20, { digits: true })));
    return [results, (performance.now() - started) / 1000, window.serverErrors];
}"""


@pytest.fixture(scope="module")
def rate_limited_url(system: System, module_launch: Launcher) -> str:
    """A gateway that allows 5 requests/s per connection, in bursts of 10. Shared by the tests
    of this file: each runs its burst on a connection of its own (the limit is per connection),
    and the test that counts refusals counts those of its own burst (the metric's increase)."""
    _, url = module_launch.gateway(system.redis_url, WS_RATE_LIMIT=5, WS_RATE_BURST=10)
    return url


RATE_REFUSALS = 'factorial_ws_errors_total{message="Rate limit exceeded"}'


def rate_refusals(url: str) -> float:
    """The gateway's count of requests refused for their rate (0 before the first one)."""
    with contextlib.suppress(AssertionError):  # metric() asserts the sample is there
        return metric(url, RATE_REFUSALS)
    return 0.0


@pytest.fixture
def burst(new_page: NewPage, rate_limited_url: str) -> Callable[[dict[str, Any]], Any]:
    """Runs BURST in a page of that gateway, with a client made with the options given."""
    return functools.partial(
        run_in_page, new_page, rate_limited_url.replace("ws://", "http://"), script=BURST
    )


def test_client_js_paces_a_burst_to_the_rate_it_is_given_and_is_never_refused(
    burst: Callable[[dict[str, Any]], Any],
) -> None:
    results, seconds, server_errors = burst({"rateLimitPerS": 4.5, "rateLimitBurst": 9})

    assert results == [str(math.factorial(k + 20)) for k in range(30)]
    assert server_errors == []  # never refused for its rate
    assert seconds >= 0.9 * (30 - 9) / 4.5


def test_client_js_refused_for_its_rate_asks_again_and_gets_every_result(
    burst: Callable[[dict[str, Any]], Any], rate_limited_url: str
) -> None:
    refused_before = rate_refusals(rate_limited_url)
    results, _, server_errors = burst({"rateLimitPerS": 4000, "rateLimitBurst": 9000})

    assert rate_refusals(rate_limited_url) > refused_before  # refused
    assert server_errors == []  # each refusal named its request, which was asked again
    assert results == [str(math.factorial(k + 20)) for k in range(30)]
