"""A user's own Celery app: it knows nothing of factorial-ws, and runs with the stock worker:

    REDIS_URL=redis://localhost:6379/0 celery -A examples.wordcount.tasks worker -Q wordcount,wordcount-long

Three kinds of task a gateway must carry: one that returns a dict, one that reports its progress
(celery-progress's convention: a PROGRESS state with ``current`` and ``total``), one that raises.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from celery import Celery, Task

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")

app = Celery("wordcount", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Store STARTED when a worker takes a task: the gateway's clients that ask for progress hear it.
    task_track_started=True,
    result_expires=3600,
    worker_prefetch_multiplier=1,
)


@app.task(name="wordcount.count_words")
def count_words(text: str) -> dict[str, int]:
    """How often each word of ``text`` occurs."""
    return dict(Counter(text.split()))


@app.task(bind=True, name="wordcount.slow_count")
def slow_count(self: Task[Any, Any], n: int, delay_s: float = 0.1) -> dict[str, int]:
    """Counts to ``n``, one step every ``delay_s``, saying how far it got after each."""
    for done in range(1, n + 1):
        time.sleep(delay_s)
        self.update_state(state="PROGRESS", meta={"current": done, "total": n})
    return {"counted": n}


@app.task(name="wordcount.explode")
def explode() -> None:
    """Always fails (a client hears only the exception's type, unless the gateway's operator
    turns messages on with TASK_ERROR_MESSAGES=1)."""
    raise ValueError("the secret detail that stays in the worker's log")
