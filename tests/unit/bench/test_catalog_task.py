"""The catalog task of scenario 9, as the bench reads it from the wordcount example."""

from __future__ import annotations

from collections import Counter

from factorial_ws.bench.catalog_task import CountWords, count_words, example_root


def test_the_bench_finds_the_example_in_its_source_checkout() -> None:
    root = example_root()
    assert root is not None and (root / "examples" / "wordcount" / "tasks.py").is_file()


def test_count_words_is_routed_as_the_examples_catalog_routes_it() -> None:
    root = example_root()
    assert root is not None
    calls = count_words(root)
    assert (calls.celery_task, calls.queue) == ("wordcount.count_words", "wordcount")


def test_every_request_is_a_text_of_its_own_with_its_exact_counts() -> None:
    calls = CountWords("wordcount.count_words", "wordcount")
    requests = [calls.request() for _ in range(1000)]
    texts = [text for text, _ in requests]
    assert len(set(texts)) == len(texts)  # no two share a computation
    for text, counts in requests[:10]:
        assert counts == dict(Counter(text.split()))
        assert len(counts) > 5 and max(counts.values()) > 1  # a dict of several words, some repeated
