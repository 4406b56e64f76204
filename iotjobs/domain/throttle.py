"""Per-thing request rate limits for the device plane: a token bucket per thing, `now` passed in."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Throttle:
    """`rate` requests per second on average, bursts of up to `burst`; a rate of 0 means unlimited."""

    rate: float
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, at)

    def allow(self, key: str, now: float) -> bool:
        if self.rate <= 0:
            return True
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > 100_000:  # forget buckets that have refilled, so idle things cost nothing
            full = [k for k, (t, a) in self._buckets.items() if t + (now - a) * self.rate >= self.burst]
            for k in full:
                del self._buckets[k]
        return allowed
