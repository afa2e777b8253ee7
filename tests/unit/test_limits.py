"""The per-connection token bucket, driven by a fake clock."""

from __future__ import annotations

from factorial_ws.limits import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def takes(bucket: TokenBucket, count: int) -> list[bool]:
    return [bucket.take() for _ in range(count)]


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=3, clock=FakeClock())
    assert takes(bucket, 4) == [True, True, True, False]


def test_tokens_come_back_at_the_rate() -> None:
    clock = FakeClock()  # steps of 1/8 s keep the float arithmetic exact
    bucket = TokenBucket(rate_per_s=4.0, burst=5, clock=clock)
    assert all(takes(bucket, 5)) and not bucket.take()
    clock.now += 0.125  # half a token
    assert not bucket.take()
    clock.now += 0.125
    assert takes(bucket, 2) == [True, False]
    clock.now += 0.75
    assert takes(bucket, 4) == [True, True, True, False]


def test_refill_never_exceeds_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=100.0, burst=2, clock=clock)
    clock.now += 3600
    assert takes(bucket, 3) == [True, True, False]


def test_refused_attempts_do_not_spend_tokens() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1.0, burst=1, clock=clock)
    assert bucket.take()
    assert not any(takes(bucket, 50))
    clock.now += 1.0
    assert bucket.take()


def test_steady_rate_is_allowed_indefinitely() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=5.0, burst=1, clock=clock)
    for _ in range(1000):
        assert bucket.take()
        clock.now += 0.2
