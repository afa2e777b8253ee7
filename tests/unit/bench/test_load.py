"""The load generator's pure parts."""

from __future__ import annotations

from factorial_ws.bench.load import split


def test_split_shares_a_total_nearly_equally() -> None:
    assert split(10, 4) == [3, 3, 2, 2]
    assert sum(split(10_000, 3)) == 10_000
    assert split(2, 4) == [1, 1, 0, 0]
