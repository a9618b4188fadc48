"""Adaptive rate control around an aiolimiter bucket.

The service's quota is a token bucket we cannot see. The controller admits
calls through its own bucket (aiolimiter's ``AsyncLimiter``) and moves that
bucket's refill rate from what the service answers: down on a throttle, slowly
back up while nothing is throttled, never above the configured ceiling.

Why not botocore's adaptive mode (CUBIC): it reacts to the *rate it sent at*,
so an early throttle during a start-up burst collapses it to a fraction of the
quota, and it pays one throttle per CUBIC cycle while climbing back. This
controller instead *measures* the quota. A throttle means the service's bucket
was empty when that call arrived; between two such moments the service admitted
exactly what its bucket refilled. So for any earlier throttle ``a`` still in
the window, ``(accepted since a + 1) / (now - a)`` is an upper bound on the
service's rate that tightens as the window grows, whatever burst came before.
The controller settles a small margin under the tightest bound, so a steady
quota costs about one throttle per probe cycle.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiolimiter import AsyncLimiter

#: ``hook(old_rate, new_rate, reason)``; reason is "throttle" or "probe".
RateHook = Callable[[float, float, str], None]


class RetunableLimiter(AsyncLimiter):
    """An ``AsyncLimiter`` holding ``burst`` calls that refills at a rate you can change.

        limiter = RetunableLimiter(rate=10.0, burst=10)
        async with limiter:
            ...                      # at most 10 at once, then 10 per second
        limiter.retune(7.0)          # from now on, 7 per second

    aiolimiter 1.3.0 computes its drain rate once, in ``__init__``
    (aiolimiter issue #98): assigning ``max_rate`` or ``time_period`` later
    changes nothing. Two ways round that were considered:

    * a fresh ``AsyncLimiter`` per change, with the old level carried over. But
      the tasks already waiting sit in the *old* limiter's heap and would still
      be released at the old rate (up to ``concurrency`` calls after a
      decrease, exactly the ones we want to hold back), and carrying the level
      over needs the private ``_level`` anyway;
    * retune in place (this class): drain the bucket at the old rate up to now
      (``_leak``), switch the rate, then re-arm the waker for the first waiter
      (``_wake_next``) so tasks already waiting are released on the new
      schedule. The level, in calls, is untouched, so a change never hands out
      a fresh burst.

    The in-place retune touches three private names of aiolimiter; the
    constructor checks they exist, so an aiolimiter that renames them fails
    loudly here instead of silently ignoring every rate change.
    """

    __slots__ = ()

    def __init__(self, rate: float, burst: int) -> None:
        for name in ("_leak", "_wake_next", "_rate_per_sec", "_event_loop"):
            if not hasattr(AsyncLimiter, name):
                raise RuntimeError(
                    f"aiolimiter has no AsyncLimiter.{name}: fleetrel's rate control "
                    "needs aiolimiter 1.2/1.3 (pin aiolimiter<1.4 or update ratecontrol.py)"
                )
        # capacity = burst calls, refilled over burst/rate seconds = rate calls/s
        super().__init__(max_rate=burst, time_period=burst / rate)

    @property
    def rate(self) -> float:
        """Calls per second the bucket refills at now."""
        return self._rate_per_sec

    @property
    def level(self) -> float:
        """Calls' worth of capacity in use (0 = a full burst available)."""
        self._leak_if_bound()
        return self._level

    def _bound_loop(self) -> Any:
        # The slot is unset until the first acquire binds the limiter to a loop;
        # before that the level is 0 and there is nothing to drain.
        loop = getattr(self, "_event_loop", None)
        if loop is None or loop.is_closed():
            return None
        return loop

    def _leak_if_bound(self) -> None:
        if self._bound_loop() is not None:
            self._leak()

    def retune(self, rate: float) -> None:
        """Refill at ``rate`` calls/s from now on; waiting tasks follow the new rate."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate!r}")
        # Account for the time elapsed so far at the *old* rate first, or the
        # new rate would be applied retroactively since the last check.
        self._leak_if_bound()
        self._rate_per_sec = rate
        self.time_period = self.max_rate / rate  # keep the documented attributes consistent
        if self._bound_loop() is not None:
            # The waker timer was computed at the old rate; recompute it.
            self._wake_next()


class RateController:
    """The rate a run sends at: a bucket of ``burst`` calls refilled at an adaptive rate.

        control = RateController(rate=10.0, burst=10)
        await control.acquire()          # before every attempt, retries included
        ...send...
        control.on_throttle()            # the service said ThrottlingException
        control.on_success()             # any other answer from the service

    :param rate: the ceiling in calls per second (``limits.rate``); the start rate.
    :param burst: the bucket's capacity in calls (``limits.burst``).
    :param adaptive: move the rate on throttles; if false the rate stays at ``rate``.
    :param floor: never admit less than this many calls per second.
    :param margin: settle this fraction under the measured quota, to absorb
        network jitter against a service bucket that is nearly empty.
    :param cooldown: seconds after a decrease during which further throttles
        cannot step the rate down again: they come from calls admitted before
        the decrease. A measured overload (see ``on_throttle``) still applies.
    :param probe: climb by this fraction of the last estimate per second, always.
    :param recover: under the estimate, also close the gap to it with this
        time constant in seconds: the margin is for absorbing jitter, not for ever.
    :param growth: once above the last estimate without a throttle, the excess
        grows by this factor per second, so a raised quota is found in seconds.
    :param episode: throttles closer together than this many seconds form one
        episode, in which the service's bucket stayed empty; only throttles of
        the current episode serve as anchors for measuring the quota.
    :param window: seconds of history kept; older throttles are not used as anchors.
    :param idle: probe only if the bucket made a caller wait within this many
        seconds: a rate nobody uses says nothing about the quota.
    :param report_step: report increases to ``on_rate_change`` once they add up
        to this fraction; decreases are always reported.
    :param clock: monotonic seconds; the event loop's clock in production.
    :param on_rate_change: ``hook(old, new, reason)``, called synchronously.
    """

    __slots__ = (
        "_accepted",
        "_anchors",
        "_cooldown_until",
        "_estimate",
        "_last_probe",
        "_limiter",
        "_rate",
        "_reported",
        "_saturated_at",
        "adaptive",
        "ceiling",
        "clock",
        "cooldown",
        "decreases",
        "floor",
        "growth",
        "idle",
        "margin",
        "min_rate",
        "episode",
        "on_rate_change",
        "probe",
        "recover",
        "report_step",
        "successes",
        "throttles",
        "throttles_ignored",
        "window",
    )

    def __init__(
        self,
        *,
        rate: float = 10.0,
        burst: int = 10,
        adaptive: bool = True,
        floor: float = 0.5,
        margin: float = 0.05,
        cooldown: float = 1.0,
        probe: float = 0.003,
        recover: float = 2.0,
        growth: float = 0.5,
        episode: float = 2.0,
        window: float = 30.0,
        idle: float = 1.0,
        report_step: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        on_rate_change: RateHook | None = None,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, not {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        if not 0 < floor <= rate:
            raise ValueError(f"floor must be in (0, rate={rate}], not {floor!r}")
        self.ceiling = float(rate)
        self.floor = float(floor)
        self.adaptive = adaptive
        self.margin = margin
        self.cooldown = cooldown
        self.probe = probe
        self.recover = recover
        self.growth = growth
        self.episode = episode
        self.window = window
        self.idle = idle
        self.report_step = report_step
        self.clock = clock
        self.on_rate_change = on_rate_change

        self._limiter = RetunableLimiter(rate=self.ceiling, burst=burst)
        self._rate = self.ceiling
        self._reported = self.ceiling
        self._estimate: float | None = None
        # times of accepted answers and of throttles, oldest first, within `window`
        self._accepted: deque[float] = deque()
        self._anchors: deque[float] = deque()
        self._cooldown_until = -math.inf
        self._saturated_at = -math.inf
        self._last_probe: float | None = None

        self.throttles = 0
        self.throttles_ignored = 0
        self.decreases = 0
        self.successes = 0
        self.min_rate = self.ceiling

    # -- the public surface ---------------------------------------------------

    @property
    def rate(self) -> float:
        """The rate admitted now, in calls per second."""
        return self._rate

    @property
    def estimate(self) -> float | None:
        """The last measured (or assumed) service rate, None before any throttle."""
        return self._estimate

    @property
    def limiter(self) -> RetunableLimiter:
        """The underlying bucket (for inspection; acquire through the controller)."""
        return self._limiter

    async def acquire(self) -> None:
        """Wait until the bucket admits one call."""
        now = self.clock()
        self._probe_up(now)
        if not self._limiter.has_capacity():
            # We are about to wait: the rate, not concurrency, is what limits
            # the run, so probing above it can find more quota.
            self._saturated_at = now
        await self._limiter.acquire()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def on_success(self) -> None:
        """The service answered anything but a throttle (200, 409, 400, 5xx).

        Every such answer reached the service's bucket and used a token, so it
        counts towards the measured quota. A lost connection is not reported.
        """
        now = self.clock()
        self.successes += 1
        self._accepted.append(now)
        self._forget_before(now - self.window)

    def on_throttle(self) -> None:
        """The service answered ThrottlingException (or another throttle code)."""
        now = self.clock()
        self.throttles += 1
        if not self.adaptive:
            return
        self._forget_before(now - self.window)
        previous: float | None = None  # the last throttle of the previous episode
        if self._anchors and now - self._anchors[-1] > self.episode:
            # A quiet spell since the last throttle means we sent under the
            # quota for a while: the service's bucket may have filled and
            # overflowed (with a small burst, soon), so accepted counts since
            # those anchors may under-measure its refill. Start a new episode.
            previous = self._anchors[-1]
            self._anchors.clear()
        bound = self._measured_bound(now)
        self._anchors.append(now)
        if bound is not None and bound < self._rate * (1 - self.margin):
            # Overload: since an earlier throttle of this episode the service
            # admitted clearly less than we send (the start, a quota that
            # dropped). The bound is data, not a reaction, so it applies even
            # inside the cool-down, and applying it again does not compound.
            estimate = bound
        elif now >= self._cooldown_until:
            # A touch: we are at the quota, after a probe overshot it or by
            # network jitter against a nearly empty bucket. The rate we are at
            # is too much, but a probe overshoots the quota by what it added
            # while draining the service's bucket; the last estimate, or what
            # was accepted since the previous episode (exact if the bucket
            # never overflowed, low if it did), is closer.
            estimate = self._rate
            known = [] if self._estimate is None else [self._estimate * (1 - self.margin)]
            if previous is not None and now > previous:
                known.append((self._accepted_between(previous, now) + 1) / (now - previous))
            if known:
                estimate = min(estimate, max(known))
        else:
            # Inside the cool-down: a storm of throttles from calls admitted
            # before the decrease must not compound it.
            self.throttles_ignored += 1
            return
        self._cooldown_until = now + self.cooldown
        self._estimate = estimate
        self._last_probe = now
        self._set_rate(estimate * (1 - self.margin), "throttle")

    def stats(self) -> dict[str, float | int | None]:
        """Counters for summaries and benchmarks."""
        return {
            "rate": self._rate,
            "ceiling": self.ceiling,
            "estimate": self._estimate,
            "min_rate": self.min_rate,
            "successes": self.successes,
            "throttles": self.throttles,
            "throttles_ignored": self.throttles_ignored,
            "decreases": self.decreases,
        }

    # -- the arithmetic ---------------------------------------------------------

    def _forget_before(self, horizon: float) -> None:
        while self._accepted and self._accepted[0] <= horizon:
            self._accepted.popleft()
        while self._anchors and self._anchors[0] <= horizon:
            self._anchors.popleft()

    def _accepted_between(self, start: float, end: float) -> int:
        """Accepted answers in (start, end]."""
        return bisect.bisect_right(self._accepted, end) - bisect.bisect_right(
            self._accepted, start
        )

    def _measured_bound(self, now: float) -> float | None:
        """Tightest upper bound on the service's rate from earlier throttles.

        The service's bucket held less than one token at each throttle. Between
        an earlier throttle ``a`` and this one it admitted what it refilled, so
        ``accepted(a, now] >= rate * (now - a) - 1``. Any anchor gives an upper
        bound; a young anchor a loose one, an old one a tight one, and a
        recent anchor follows a quota that just dropped.
        """
        best: float | None = None
        for anchor in self._anchors:
            span = now - anchor
            if span <= 0:
                continue
            bound = (self._accepted_between(anchor, now) + 1) / span
            if best is None or bound < best:
                best = bound
        return best

    def _probe_up(self, now: float) -> None:
        last, self._last_probe = self._last_probe, now
        if (
            not self.adaptive
            or last is None
            or self._rate >= self.ceiling
            or now < self._cooldown_until
            or now - self._saturated_at > self.idle
        ):
            return
        reference = self._estimate if self._estimate is not None else self._rate
        elapsed = now - max(last, self._cooldown_until)
        # Back towards the estimate with a time constant of `recover` seconds
        # (the margin under it was for jitter, not for ever), then slowly
        # past it; once above it without a throttle the excess grows
        # geometrically, so a quota that was raised is found in seconds.
        speed = (
            self.probe * reference
            + max(0.0, reference - self._rate) / self.recover
            + self.growth * max(0.0, self._rate - reference)
        )
        self._set_rate(self._rate + speed * elapsed, "probe")

    def _set_rate(self, rate: float, reason: str) -> None:
        rate = min(self.ceiling, max(self.floor, rate))
        old = self._rate
        if rate == old:
            return
        self._rate = rate
        self._limiter.retune(rate)
        self.min_rate = min(self.min_rate, rate)
        if rate < old:
            self.decreases += 1
            report = True
        else:
            report = rate >= self._reported * (1 + self.report_step) or (
                rate == self.ceiling and self._reported < self.ceiling
            )
        if report:
            previous, self._reported = self._reported, rate
            if self.on_rate_change is not None:
                self.on_rate_change(previous, rate, reason)
