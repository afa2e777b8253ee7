"""What a task costs, known before it runs: the unit the hard queue's budgets count in.

A task catalog calls one function per task kind, ``cost(params) -> int``. For a factorial it
is the decimal digits of n!: the bytes its result takes in Redis, and, within a small factor,
the work of computing and converting it (GMP: about n log n). Counting digits rather than tasks
lets a client queue hundreds of numbers just over 1000 (2571 digits each) where a few numbers
near a million (5.6 million digits each) fill its budget.
"""

from __future__ import annotations

import math
from typing import Final

_LN_10: Final = math.log(10)


def factorial_cost(number: int) -> int:
    """The decimal digits of ``number!``: log10(n!) = lgamma(n + 1) / ln 10, rounded down, plus
    one. Float precision may put it one digit off near a power of ten, which no budget notices."""
    if number < 2:
        return 1
    return math.floor(math.lgamma(number + 1) / _LN_10) + 1
