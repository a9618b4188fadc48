"""A token bucket that answers at once: take a token or be throttled (no waiting).

This is the server's side of rate limiting: AWS does not queue a call over quota, it
refuses it. The bucket refills at `rate` tokens a second up to `burst`, and starts full.

    bucket = TokenBucket(rate=10, burst=10)
    if not bucket.take():
        ...  # answer ThrottlingException
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class TokenBucket:
    """`rate` tokens a second, at most `burst` held; `clock` is injectable for tests."""

    __slots__ = ("rate", "burst", "_tokens", "_last", "_clock", "_lock")

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got rate={rate} burst={burst}")
        self.rate, self.burst = float(rate), float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend one token if there is a whole one; False means throttle this call."""
        with self._lock:
            now = self._clock()
            # Refill lazily for the time since the last call instead of on a timer:
            # the answer is the same and an idle bucket costs nothing.
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
