"""Which tasks of the wordcount app clients may call through factorial-ws, and how:

    REDIS_URL=redis://localhost:6379/0 factorial-ws serve --tasks examples.wordcount.catalog:catalog

The gateway never imports tasks.py: it names each task by the name its workers registered.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from factorial_ws import Catalog

LONG_TEXT_CHARS = 10_000  # longer texts go to a queue of their own


class CountWordsParams(BaseModel):
    text: str = Field(max_length=1_000_000, description="the text whose words are counted")


class SlowCountParams(BaseModel):
    n: int = Field(ge=1, le=100, description="how far to count")
    delay_s: float = Field(default=0.1, ge=0, le=1, description="seconds per step")


class NoParams(BaseModel):
    pass


catalog = Catalog()
catalog.add(
    "count_words",
    celery_task="wordcount.count_words",
    params=CountWordsParams,
    queue=lambda params: "wordcount-long" if len(params.text) > LONG_TEXT_CHARS else "wordcount",
    timeout=10,
    # The same text always has the same counts: identical requests share one computation.
    share_results=True,
    # What the budgets count: about a unit per kilobyte of text.
    cost=lambda params: 1 + len(params.text) // 1000,
)
catalog.add(
    "slow_count",
    celery_task="wordcount.slow_count",
    params=SlowCountParams,
    queue="wordcount",
    timeout=150,
    soft_time_limit=110,
    time_limit=120,
    cost=lambda params: params.n,
)
catalog.add("explode", celery_task="wordcount.explode", params=NoParams, queue="wordcount", timeout=10)
