"""The catalog task the bench measures beside factorial: the wordcount example's ``count_words``
(examples/wordcount/, a dict result), as a user of the README's "Expose your own Celery tasks"
runs it: a stock Celery worker of the example's own app and a gateway serving its catalog, both
started here on the system's Redis for scenario 9 alone, so the other scenarios do not share
the cores with them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery

from ..catalog.loading import import_catalog
from ..client import Client
from ..config import Config
from ..supervisor.processes import start_child, stop_child, wait_until
from ..worker.processes import worker_command
from .extra_gateways import extra_gateway
from .load import REPLY_TIMEOUT_S
from .system import System

CATALOG = "examples.wordcount.catalog:catalog"  # as the README's `factorial-ws serve --tasks`
WORKER_APP = "examples.wordcount.tasks"  # as the README's `celery -A`
WORKER_QUEUES = "wordcount,wordcount-long"
TASK = "count_words"
WORKER_HOSTNAME = "wordcount-bench@%h"
# A sentence of 13 words, 10 of them distinct, and one word of each request's own: no two
# requests are identical, so none shares another's computation (count_words has share_results)
# and every request is computed, as every raw Celery call is.
_SENTENCE = "the quick brown fox jumps over the lazy dog and the dog sleeps"
_START_TIMEOUT_S = 60.0
# Budgets out of the way (but still checked by the submission script): 1000 requests in flight
# from one address are what is measured, not a refusal of them.
_UNLIMITED_COST = 10**9


def example_root() -> Path | None:
    """The source checkout that holds examples/wordcount (the package's own), if any: an installed
    wheel has no examples."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "examples" / "wordcount" / "catalog.py").is_file() else None


@dataclass
class CountWords:
    """count_words requests, each with a text of its own; the Celery task and queue the catalog
    routes them to, for the raw Celery reference to send the very same task."""

    celery_task: str
    queue: str
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def request(self) -> tuple[str, dict[str, int]]:
        """A new text, and the counts count_words must return for it."""
        text = f"{_SENTENCE} w{next(self._numbers)}"
        return text, dict(Counter(text.split()))

    async def ask(self, client: Client) -> bool:
        """One call through the client library; True when the exact counts came back."""
        text, expected = self.request()
        result = await asyncio.wait_for(client.call(TASK, text=text), REPLY_TIMEOUT_S)
        return bool(result == expected)


def count_words(root: Path) -> CountWords:
    """The catalog's count_words entry, read as the gateway reads it (for its task and queue)."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # `examples` is a package of the checkout, not installed
    entry = import_catalog(CATALOG).get(TASK)
    if entry is None:
        raise RuntimeError(f"{CATALOG} has no {TASK!r}")
    text, _ = CountWords("", "").request()
    params = entry.validate({"text": text})
    return CountWords(entry.task_name(params), entry.queue_of(params))


@dataclass(frozen=True)
class CatalogGateway:
    url: str
    pid: int


@contextlib.contextmanager
def catalog_gateway(system: System, config: Config, root: Path, log_dir: Path) -> Iterator[CatalogGateway]:
    """The example's stock worker (the soft worker's pool size) and a gateway with its catalog,
    on the system's Redis, from the checkout ``root``; stopped at the end."""
    config = config.replace(
        redis_url=system.redis_url,
        tasks=CATALOG,
        result_reuse=False,
        queue_max_cost=_UNLIMITED_COST,
        queue_cost_per_client=_UNLIMITED_COST,
    )
    command = worker_command(
        WORKER_QUEUES, concurrency=config.soft_concurrency, hostname=WORKER_HOSTNAME, app=WORKER_APP
    )
    env = {**os.environ, **config.to_env(), "PYTHONUNBUFFERED": "1"}
    worker = start_child(command, env, log_path=log_dir / "wordcount-worker.log", cwd=root)
    try:
        with raw_catalog_app(system.redis_url) as app:
            wait_until(lambda: _answers(app), _START_TIMEOUT_S, "the wordcount worker", watch=[worker])
        with extra_gateway(config, log_dir / "gateway-catalog.log", cwd=root) as (url, pid):
            yield CatalogGateway(url, pid)
    finally:
        stop_child(worker, grace_s=15)


def raw_catalog_app(redis_url: str) -> Celery:
    """A plain Celery client, as a user of the example's app has: Celery's defaults (JSON), and
    no import of the tasks' code (it sends them by name, as the gateway does)."""
    return Celery("bench-raw-catalog", broker=redis_url, backend=redis_url, set_as_current=False)


def _answers(app: Celery) -> bool:
    """The worker answers Celery's ping (it is consuming)."""
    prefix = WORKER_HOSTNAME.split("@", 1)[0] + "@"
    replies = app.control.ping(timeout=0.5) or []
    return any(name.startswith(prefix) for reply in replies for name in reply)
