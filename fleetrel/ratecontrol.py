"""Adaptive rate control around an aiolimiter bucket.

    control = RateController(rate=10.0, burst=10)
    await control.acquire()          # before every attempt, retries included
    control.on_throttle()            # the service said ThrottlingException
    control.on_success()             # any other answer from the service

    reads = bucket(rate=10.0, burst=1)   # a plain bucket, for calls that do not adapt
    async with reads:
        ...

The service's quota is a token bucket we cannot see. The controller admits calls
through its own bucket (`RetunableLimiter`, an aiolimiter ``AsyncLimiter`` whose rate
can change) and moves that bucket's refill rate to what `fleetrel.quota` estimates from
the service's answers: down on a throttle, back up while nothing is throttled, never
above the configured ceiling. This module is the actuator: the clock, the bucket, and
the reports of rate changes; the arithmetic is in `fleetrel.quota`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any, Protocol

from aiolimiter import AsyncLimiter

from fleetrel.neighbours import LOOK_EVERY
from fleetrel.quota import QuotaEstimator, Tuning

#: ``hook(old_rate, new_rate, reason)``; reason is "throttle", "probe" or "neighbours".
RateHook = Callable[[float, float, str], None]

# The longest a call waits for the answers to the run's first wave (see
# RateController._first_wave_or_timeout): far above a control-plane round trip.
FIRST_ANSWER_WAIT = 1.0


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

    ``empty()`` sets the level (``_level``) to a full bucket: after a throttle
    the burst we saved must not be spent.

    Retuning and emptying touch private names of aiolimiter (``_leak``,
    ``_wake_next``, ``_rate_per_sec``, ``_level``, ``_event_loop``); the
    constructor checks they exist, so an aiolimiter that renames them fails
    loudly here instead of silently ignoring every rate change.
    """

    __slots__ = ()

    def __init__(self, rate: float, burst: int) -> None:
        for name in ("_leak", "_wake_next", "_rate_per_sec", "_level", "_event_loop", "_waiters"):
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

    def empty(self) -> None:
        """Spend whatever burst is saved: the next acquire waits one refill.

        The service's bucket is empty (it just throttled us), so calls from a burst we
        saved would only be throttled in turn."""
        self._leak_if_bound()
        self._level = max(self._level, float(self.max_rate))
        if self._bound_loop() is not None:
            self._wake_next()

    def resize(self, burst: int) -> None:
        """Hold at most ``burst`` calls from now on (the rate is unchanged)."""
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self._leak_if_bound()
        self.max_rate = burst
        self.time_period = burst / self._rate_per_sec
        self._level = min(self._level, float(burst))

    def take(self) -> bool:
        """Take one call's room if the bucket has it now, without waiting: True if taken.
        (What ``acquire`` does when it need not wait.)"""
        if not self.has_capacity():
            return False
        self._level += 1
        self._wake_next()  # as acquire does: the first waiter's timer follows the new level
        return True

    def waiting(self) -> bool:
        """Whether a call is waiting in the bucket for its turn."""
        return any(not waiter[-1].done() for waiter in self._waiters)

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


class Counter(Protocol):
    """How many runs send to this run's quota from this host, this one included
    (`fleetrel.neighbours.Neighbours`; a simulation's own in `benchmarks/simulate.py`)."""

    def count(self) -> int: ...


def bucket(rate: float, burst: int) -> RetunableLimiter:
    """A bucket of `burst` calls refilled at `rate` calls/s: the one way fleetrel builds one.

        reads = bucket(rate=10.0, burst=1)
        async with reads:
            ...                                   # at most 10 a second, one at a time

    (``AsyncLimiter(max_rate, time_period)`` reads as "max_rate per time_period", which
    is a burst of max_rate: ``AsyncLimiter(10, 1)`` allows 10 at once. Spelling the two
    apart here keeps that mistake out of the callers.)
    """
    return RetunableLimiter(rate=rate, burst=burst)


class RateController:
    """The rate a run sends at: a bucket of ``burst`` calls refilled at an adaptive rate.

        control = RateController(rate=10.0, burst=10)
        control.on_rate_change = lambda old, new, reason: print(old, new, reason)
        await control.acquire()          # before every attempt, retries included
        control.on_throttle()            # the service said ThrottlingException
        control.on_success()             # any other answer from the service

    :param rate: the ceiling in calls per second (``limits.rate``); the start rate.
    :param burst: the bucket's capacity in calls (``limits.burst``).
    :param adaptive: move the rate on throttles; if false the rate stays at ``rate``.
    :param floor: never admit less than this many calls per second.
    :param tuning: the estimator's constants (`fleetrel.quota.Tuning`).
    :param clock: monotonic seconds for the estimator. Default: the running event
        loop's clock, the one the bucket waits on (a virtual loop in simulations).
    :param on_rate_change: ``hook(old, new, reason)``, called synchronously; reason
        is "throttle", "probe" or "neighbours".
    """

    __slots__ = (
        "_answers",
        "_clock",
        "_estimator",
        "_first_burst_size",
        "_limiter",
        "_neighbours",
        "_look_at",
        "_count",
        "_open",
        "_reported",
        "_waited_at",
        "_wave",
        "_wave_answered",
        "adaptive",
        "admitted",
        "decreases",
        "min_rate",
        "on_rate_change",
        "successes",
        "throttles",
        "tuning",
    )

    def __init__(
        self,
        *,
        rate: float = 10.0,
        burst: int = 10,
        adaptive: bool = True,
        floor: float = 0.5,
        tuning: Tuning = Tuning(),
        clock: Callable[[], float] | None = None,
        on_rate_change: RateHook | None = None,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, not {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        if not 0 < floor <= rate:
            raise ValueError(f"floor must be in (0, rate={rate}], not {floor!r}")
        self.adaptive = adaptive
        self.tuning = tuning
        self.on_rate_change = on_rate_change
        self._clock = clock
        self._estimator = QuotaEstimator(ceiling=rate, floor=floor, burst=burst, tuning=tuning)
        self._limiter = bucket(rate, burst)
        self._reported = float(rate)
        self._waited_at = -math.inf
        self._first_burst_size = burst
        # The first wave (`_first_wave_or_timeout`). A fixed rate keeps its schedule, and
        # a bucket of one saves no refill worth holding back (it would only delay the
        # second call by a round trip): neither waits for answers.
        self._open = not adaptive or burst == 1
        self._wave: int | None = None  # calls admitted when the first answer came
        self._answers = 0  # answers while the gate was shut
        self._wave_answered: asyncio.Event | None = None
        self._count = 1  # runs sharing the ceiling, this one included
        self._neighbours: Counter | None = None  # counts them (`watch`)
        self._look_at = -math.inf  # ... next at an admission from then on
        self.admitted = 0  # calls admitted so far
        self.throttles = 0
        self.decreases = 0
        self.successes = 0
        self.min_rate = float(rate)

    # -- the public surface ---------------------------------------------------

    @property
    def rate(self) -> float:
        """The rate admitted now, in calls per second."""
        return self._estimator.rate

    @property
    def ceiling(self) -> float:
        """The most it ever admits (``limits.rate``)."""
        return self._estimator.ceiling

    @property
    def estimate(self) -> float | None:
        """The last measured (or assumed) rate available to this run, None before any throttle."""
        return self._estimator.estimate

    @property
    def limiter(self) -> RetunableLimiter:
        """The underlying bucket (for inspection; acquire through the controller)."""
        return self._limiter

    async def acquire(self) -> None:
        """Wait until the bucket admits one call."""
        if not self._open and self._shut():
            await self._first_wave_or_timeout()
        if not self.try_acquire():
            await self._limiter.acquire()
            self.admitted += 1
            if self._neighbours is not None:
                self._look(self._now())

    def watch(self, neighbours: Counter | None) -> None:
        """Share the ceiling with the runs `neighbours.count()` says send to this quota
        from this host (`fleetrel.neighbours.Neighbours`): counted now, then at an
        admission every LOOK_EVERY seconds at most. None: stop looking (between waves,
        at the end); the part stays until the next look.

        At admissions, queued ones included, and not on a timer of its own: a task waking
        ten times a second cost a lone run at 10/s 6-10 % of its calls per CPU-second
        (benchmarks/run.py a and f, interleaved); a run that admits nothing has nothing
        to pace, and its lock is what the others see."""
        self._neighbours = neighbours
        self._look_at = -math.inf
        if neighbours is not None:
            self._look(self._now())

    def _look(self, now: float) -> None:
        if now >= self._look_at:
            self._look_at = now + LOOK_EVERY
            self.share(self._neighbours.count())

    def share(self, count: int) -> None:
        """`count` runs (this one included) send to this quota from this host
        (`fleetrel.neighbours`, `watch`): each
        at its ceiling over `count` (`QuotaEstimator.share`), and, beside another, with no
        burst.

        Another run keeps the service's bucket empty, so a burst of ours would only be
        throttled: a run that gains a neighbour, or starts beside one, holds no burst and
        waits an interval of its part before its next call, by when the other has looked
        and slowed down too. A run that starts so has no first wave to wait for
        (`_first_wave_or_timeout`): its calls are paced from the first. Alone again, its
        burst is the told one, saved from then on: the larger bucket starts empty, or the
        calls queued at the part's pace would leave at once, into the service's empty
        bucket (simulate.py f: 7 throttles of 8 at the end)."""
        if count == self._count or not self.adaptive:
            return
        more = count > self._count
        self._count = count
        if count > 1:
            if self.admitted == 0:
                self._first_burst_size = 1
                self._open_gate()
            self._limiter.resize(1)
            if more:
                self._limiter.empty()
        else:
            told = self._estimator.burst or self._first_burst_size
            bound = self._estimator.burst_bound
            self._limiter.resize(max(1, min(told, bound) if bound is not None else told))
            self._limiter.empty()  # the bucket the neighbour kept empty has saved nothing for us
        self._apply(self._estimator.share(count), "neighbours")

    def _shut(self) -> bool:
        """While the gate is not open (callers read `_open` first: the per-call path pays
        one attribute read): whether the next call must wait for the first wave's answers,
        once the whole first burst is out or once the first answer has come."""
        return self._wave is not None or self.admitted >= self._first_burst_size

    async def _first_wave_or_timeout(self) -> None:
        """Hold further calls until the service has answered the run's first wave: the
        calls admitted before its first answer.

        Two reasons, both once a run. Paced calls: our bucket refills from the moment it
        admitted the burst; the service's from the moment the burst reached it, which is
        later by the time the calls take to leave (20 targets starting at once on two
        cores: a few hundred ms), and it is capped. The refill we saved meanwhile would
        be spent into a bucket that has not got it: 3 throttles a target with 20 targets.
        So no paced call leaves before the first answer, and the refill counts from then
        (`_answered`). Burst calls: until the whole wave has answered we do not know
        whether the service's burst is as large as ours. With `burst: 100` against a
        bucket of 10, answers arrive in any order within a millisecond or two; a worker
        whose call succeeded first would send its next call from our saved burst before
        the throttles of its neighbours arrived, into a bucket they had just found empty
        (4 of the 10 first-burst throttles in `simulate.py` scenario h). The cost is the
        spread of the wave's answers, once; an answer that never comes (a lost call)
        holds nothing longer than FIRST_ANSWER_WAIT."""
        if self._wave_answered is None:
            self._wave_answered = asyncio.Event()
        try:
            await asyncio.wait_for(self._wave_answered.wait(), FIRST_ANSWER_WAIT)
        except TimeoutError:
            self._open_gate()  # go on paced by the bucket alone, as before any answer

    def try_acquire(self) -> bool:
        """Admit one call now if the bucket has room for it: True if it did. False takes
        nothing; the caller then waits in `acquire`.

        The caller's fast path: a call admitted at once has nothing to wait for, so nothing
        to make cancellable (an anyio cancel scope per call costs more than the rest of
        the admission)."""
        if not self._open and self._shut():
            return False  # `acquire` waits for the first wave's answers
        now = self._now()
        if self._neighbours is not None:
            self._look(now)
        room = self._limiter.has_capacity()
        if not room or self._limiter.waiting():
            # We are about to wait, or other calls are: the rate, not concurrency, is what
            # limits the run, so probing above it can find more quota. (Not only when this
            # call must wait: at a burst of one a call whose step takes a little longer than
            # an interval (50 ms of latency, its journal records) finds room every time and
            # takes it ahead of the calls queued in the bucket, so the run, held back by its
            # rate all along, looked idle: the probe stopped, 18.9/s of 20 for 20 s, E 1.10.)
            self._waited_at = now
        if self.adaptive:
            self._apply(self._estimator.probe(now, self._waited_at), "probe")
        if room and self._limiter.take():
            self.admitted += 1
            return True
        return False

    def on_success(self) -> None:
        """The service answered anything but a throttle (200, 409, 400, 5xx).

        Every such answer reached the service's bucket and used a token, so it counts
        towards the measured quota. A lost connection is not reported.
        """
        self.successes += 1
        self._estimator.accepted(self._now())
        if not self._open:  # the per-call path pays one attribute read, not a call
            self._answered()  # after the estimator has this answer: it may end the first wave

    def _answered(self) -> None:
        """An answer to a call of the first wave (see `_first_wave_or_timeout`). The
        first one fixes the wave; if the whole first burst was admitted before it, our
        bucket refills from now. The last one lets calls go again."""
        self._answers += 1
        if self._wave is None:
            self._wave = self.admitted
            if self.admitted >= self._first_burst_size:
                self._limiter.empty()
        if self._answers >= self._wave:
            self._open_gate()

    def _open_gate(self) -> None:
        self._open = True
        if self._wave is not None:
            self._apply(self._estimator.first_wave_answered(self._now()), "probe")
        if self._wave_answered is not None:
            self._wave_answered.set()

    @property
    def in_first_burst(self) -> bool:
        """Whether the call admitted last (read it right after `acquire`) is one of the
        run's first `burst` calls: the ones the bucket held from the start. Counted, not
        timed: when the first answers come back later than FIRST_ANSWER_WAIT, the bucket
        has refilled meanwhile and admits more without a wait, but those are paced calls
        the service's bucket (full when the burst arrived, and capped) has not refilled
        for."""
        return self.admitted <= self._first_burst_size

    def on_throttle(self, *, first_burst: bool | None = None) -> None:
        """The service answered ThrottlingException (or another throttle code).

        `first_burst`: whether the throttled call was one of the first burst
        (`in_first_burst` right after its admission), if the caller kept that:
        throttles of the first burst, and only those, say that other callers started
        with us."""
        self.throttles += 1
        if not self.adaptive:
            return
        # The service's bucket is empty now: a burst saved in ours would be spent into
        # it and throttled, call after call. Whatever the rate, start from an empty one.
        # (A bucket of one saves no burst, only the next paced call: emptying it would
        # just delay that call by up to an interval, which cost 1.3 % of E at B=1.)
        if self._limiter.max_rate > 1:
            self._limiter.empty()
        rate = self._estimator.throttled(self._now(), waited=self._waited_at > -math.inf, first_burst=first_burst)
        bound = self._estimator.burst_bound
        if bound is not None and bound < self._limiter.max_rate:
            # never save more than the service's bucket can hold
            self._limiter.resize(bound)
        self._apply(rate, "throttle")
        if not self._open:
            self._answered()  # after the estimator has this throttle: it may end the first wave

    def stats(self) -> dict[str, float | int | None]:
        """Counters for summaries and benchmarks."""
        return {
            "rate": self.rate,
            "ceiling": self.ceiling,
            "estimate": self.estimate,
            "min_rate": self.min_rate,
            "successes": self.successes,
            "throttles": self.throttles,
            "throttles_ignored": self._estimator.decreases_ignored,
            "decreases": self.decreases,
        }

    # -- the actuator -----------------------------------------------------------

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    def _apply(self, rate: float, reason: str) -> None:
        """Retune the bucket to the estimator's `rate`; report it past the hysteresis."""
        old = self._limiter.rate
        if rate == old:
            return
        self._limiter.retune(rate)
        self.min_rate = min(self.min_rate, rate)
        if rate < old:
            self.decreases += 1
            report = True
        else:
            # increases come in small probe steps: report them once they add up
            report = rate >= self._reported * (1 + self.tuning.report_step) or (
                rate == self.ceiling and self._reported < self.ceiling
            )
        if report:
            previous, self._reported = self._reported, rate
            if self.on_rate_change is not None:
                self.on_rate_change(previous, rate, reason)
