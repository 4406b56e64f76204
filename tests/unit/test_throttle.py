from __future__ import annotations

from iotjobs.domain.throttle import Throttle


def test_a_burst_then_the_steady_rate() -> None:
    throttle = Throttle(rate=2.0, burst=3)
    assert [throttle.allow("t", 100.0) for _ in range(4)] == [True, True, True, False]
    assert throttle.allow("t", 100.4) is False  # 0.8 of a token so far
    assert throttle.allow("t", 100.5) is True
    assert throttle.allow("other", 100.5) is True  # each thing has its own bucket


def test_zero_means_unlimited() -> None:
    throttle = Throttle(rate=0.0, burst=1)
    assert all(throttle.allow("t", 1.0) for _ in range(1000))
