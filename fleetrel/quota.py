"""The quota estimator: what the service's answers say about the rate it admits.

    estimator = QuotaEstimator(ceiling=10.0, floor=0.5)
    estimator.accepted(now)                  # an answer that used quota
    rate = estimator.throttled(now)          # ThrottlingException: the rate to send at now
    rate = estimator.probe(now, waited_at)   # before each call: the rate to send at now

Pure arithmetic, in the shape of botocore's ``CubicCalculator``: every method takes
``now`` and returns a target rate; no clock, no I/O, no bucket. ``ratecontrol`` owns
those and applies the rate; ``benchmarks/simulate.py`` tunes it on a virtual clock.

Why not CUBIC (β = 0.7 per throttle): it reacts to the *rate it sent at*, so an early
throttle during a start-up burst collapses it to a fraction of the quota, and it pays
one throttle per CUBIC cycle while climbing back. This estimator *measures*. A throttle
means the service's bucket was empty when that call arrived; between two such moments
the service admitted exactly what its bucket refilled. So for any earlier throttle
``a`` still in the window, ``(accepted since a + 1) / (now - a)`` is an upper bound on
the rate the service admitted *to this run*, whatever burst came before.

Other callers on the same quota (a second run, other automation) take their share of
those refills unseen, so the bound measures the quota *available to this run*, not the
quota: what to send at now. Four things keep a shared quota shared well:

- runs started together (their first bursts collide in one bucket) go to half their
  ceiling at the first cluster of throttles, as TCP halves on loss, down from their
  ceiling or up from a guess that lost the race: equal runs stay equal, where each
  run's own bound (or guess) would measure its luck in the race for the first ten
  tokens and freeze that split (AIMD's fairness argument, Chiu and Jain 1989: equal
  multiplicative cuts keep equal rates equal, and the probe below, in proportion to
  each run's estimate, adds the same to equal runs). A run started apart from
  another (0.1-1 s later) halves too and holds half for a few seconds whatever its
  bound says (`Tuning.start_hold`); and the earlier run, which had the quota to itself
  and now measures a bound between half and 95 % of its ceiling, goes to half too
  (`Tuning.arrival`), where stepping down bound by bound took it 5 s and left it 10 %
  above the late run for good. A lone run told a ceiling above its quota reads the
  same at first, so one that then stays unthrottled at half for a few seconds leaves
  the sharing and climbs (`Tuning.alone`);
- while two runs share, the split is pulled towards half each, since a run's own
  measures keep whatever split it has: a touch cuts a run above half by up to a fifth,
  down to half (`Tuning.share_cut`), and a run a little under half is brought back to it
  (`Tuning.share_band`). Half the ceiling is a number both runs compute alike, where
  each run's bound or admitted count measures its own share. (Cutting every run by a
  fraction at each throttle, AIMD, was tried: which run a throttle hits is not fair on
  so regular a load, and a run that keeps the bucket's rhythm may never be hit);
- the probe never stops: above the last estimate it grows, so what another caller
  frees is taken back; and a run squeezed far under its ceiling climbs towards it in
  calls/s once its throttles stop (`Tuning.climb`), the smaller share faster, so a
  freed quota is found in seconds, not in the minute the probe's growth took from a
  small estimate;
- a throttle empties our saved burst (`ratecontrol`), so our burst never lands on a
  bucket another caller has just emptied.

Runs on one host need none of the guessing: they count each other
(`fleetrel.neighbours`), and each takes its part of the ceiling (`share`), under which
these rules still read what callers elsewhere take.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tuning:
    """The estimator's constants, each with the reason for its value.

    Tuned with ``python benchmarks/simulate.py`` (every benchmark scenario, ten seeds)
    and confirmed with ``python benchmarks/run.py``.
    """

    #: Settle this fraction under the measured bound. Calls reach the service up to a
    #: few ms apart from when they were admitted (network jitter), so a client sending
    #: exactly at the quota into a nearly empty bucket is throttled now and then; 5 %
    #: at 10/s is one call in 2 s of slack, enough to absorb ms-scale jitter, and costs
    #: at most 5 % of E for the few seconds the probe takes to close the gap.
    margin: float = 0.05
    #: Seconds after a decrease in which a further touch cannot step the rate down
    #: again: the throttles that arrive then answer calls admitted *before* the
    #: decrease (16 in flight, 50 ms latency, plus the backoff of those retried).
    #: A measured overload still applies: it is data, not a reaction.
    cooldown: float = 1.0
    #: Climb by this fraction of the last estimate per second, always: at 10/s it
    #: crosses a 5 % margin in a few seconds with `recover`, and a steady quota then
    #: costs about one throttle per probe cycle.
    probe: float = 0.003
    #: A run saturated far under its scale (see `gate`) and not throttled for `quiet`
    #: seconds climbs towards the scale by this fraction of the gap per second, in
    #: calls/s, until its next throttle. The scale is what runs sharing a quota see
    #: alike (the ceiling, `QuotaEstimator._scale`), so a run squeezed to 2/s climbs
    #: 2.4 calls/s per second and one at 4/s 1.8: the smaller share gains more, where
    #: the probe above (a fraction of each run's own estimate) kept their ratio. A
    #: caller that stopped (scenario i: 8/s of 10 for 20 s, then none) leaves the run
    #: back at 90 % of the quota within 4.2 s (16.9 s with the probe alone).
    climb: float = 0.3
    #: ... only under this fraction of the scale: a run there holds less than 90 % of
    #: a fair share of two, so someone else takes (or took) most of the quota. Above it
    #: the probe's slow cycle stays (a steady foreign caller, g, costs one throttle in
    #: 10 s). Beside the deaf caller of (i) on the emulator a run is squeezed to 4-4.3/s,
    #: not 2 (the caller loses a fifth of its calls to it): at 0.37, 2 of 10 simulated
    #: seeds and the emulator run stayed there 13-16 s after the caller stopped.
    gate: float = 0.45
    #: ... and only this many seconds after the last throttle: the throttles of a
    #: squeeze come every second or so, those of a steady share every 10 s.
    quiet: float = 1.5
    #: ... and not within this many seconds of a throttle that cut the estimate by
    #: `drop` or more: a quota that just dropped (d: 50 to 20/s, the run at 19, under the
    #: gate) is what the service now admits, and a climb would only cost a throttle
    #: every 2 s (θ 1.50 -> 1.79 %); a caller that stops has been there longer than that.
    settle: float = 8.0
    #: ... (see `settle`): a cut of this fraction of the estimate or more.
    drop: float = 0.3
    #: A run whose answers never came faster than this fraction of its ceiling (at most
    #: what the service admitted in a second, measured at each throttle) was told a
    #: ceiling far above its quota (c: 100/s against 10): its scale is that peak, not
    #: the ceiling, so it never climbs towards a rate it has never been admitted.
    overstated: float = 0.5
    #: Under the estimate, close the gap to it with this time constant (seconds): the
    #: margin absorbs jitter right after a throttle, it is not meant to last.
    recover: float = 2.0
    #: Once above the last estimate without a throttle, the excess grows by this factor
    #: per second (doubling every ln 2 / 0.5 ≈ 1.4 s), so a raised quota is found in
    #: seconds rather than minutes.
    growth: float = 0.5
    #: Throttles closer together than this (seconds) form one episode, in which the
    #: service's bucket stayed empty; only anchors of the current episode bound the
    #: quota. A bucket of B at rate R refills in B/R s (1 s for the default 10 at 10/s);
    #: after a longer quiet spell it may have overflowed and the count would read low.
    episode: float = 2.0
    #: Stretches of the told burst and up to this many more accepted calls bound the
    #: service's rate from below, to check a measured bound against
    #: (`QuotaEstimator._admitted_at_least`).
    dense: int = 4
    #: Seconds of history kept; older throttles are not anchors and older acceptances
    #: are forgotten. 30 s bounds the memory and the work per throttle (≤ 30 × rate).
    window: float = 30.0
    #: Probe only if the bucket made a caller wait within this many seconds: a rate
    #: nobody uses says nothing about the quota.
    idle: float = 1.0
    #: Report an increase once increases add up to this fraction (decreases always):
    #: a journal line per probe step of a few thousandths would drown the journal.
    report_step: float = 0.05
    #: Seconds after the first throttle during which answers to the calls sent with it
    #: still arrive (a burst sent together answers within one round trip; control
    #: plane calls take 20-200 ms), so a first guess of the quota counts them in.
    round_trip: float = 0.25
    #: Round trips from a run's first call (the first answer times the first) in which
    #: a cluster of throttles (two or more) means other runs started with it: their
    #: bursts and ours met one bucket. The answers to our first burst arrive within
    #: one round trip and a little jitter; two leave room for a run that started a
    #: little earlier or later, and end long before a lone run's first touch.
    start: float = 2.0
    #: ... then send at this fraction of the ceiling, every such run alike. One half
    #: is exact for two runs (the case of two operators, or a CI job beside a run);
    #: with more the overload bound takes each further down from there. A lone run
    #: whose first burst met a bucket someone else had emptied is put here too (it
    #: cannot tell), and its bound takes it down if the other caller stays.
    start_share: float = 0.5
    #: ... and hold it this many seconds whatever a bound says. A run that started
    #: 0.1-1 s after another meets a bucket the other keeps empty at its full rate: its
    #: bound measured then is its share of 15/s sent into 10 (a third), and the other's
    #: two thirds; following both froze a 2:1 split for the whole run (simulate.py
    #: --stagger: fairness 0.52-0.59). Held at half, the late run leaves the earlier one
    #: a bound that takes it down to the other half within seconds: fairness 0.85-0.86,
    #: E 1.05-1.06 (was 1.13-1.29), at θ 5.0-5.5 % (4.2-4.5). Runs started together are
    #: both at the share already (θ 3.60 -> 3.7 %); three runs started together overload
    #: the quota for the hold (θ 10.2 -> 11.5 %; 13.7 % at 8 s).
    start_hold: float = 5.0
    #: A run that had the quota to itself (none of its first burst throttled, admitted
    #: at least half its ceiling) and then measures a bound under this fraction of its
    #: ceiling, but above the share, met a caller that came after it (a second run
    #: started 0.1-1 s later): it goes to the share too, as if they had started together.
    #: Before, it stepped down bound by bound (10 -> 5.4/s over 5 s, the late run held at
    #: 4.75) and kept 10 % more for the whole run. 0.95 catches the second bound after
    #: the late run's burst (9.0 of 10, at 1.7-2.1 s); 0.92 and 0.9 meet E and fairness
    #: in as many seeds but a bound later, at up to 0.3 points more θ. A quota that drops
    #: (d) reads the same, then its bound takes it under the share (d: θ 1.50 -> 1.32 %). A deaf caller that starts after the run (3-4/s of
    #: 10, from 5 s in, simulated) is no longer squeezed: the run takes what it leaves
    #: (about 6/s at 4/s), θ 6.3-7.5 -> 1.5-1.6 %, where it took 6.9/s before.
    arrival: float = 0.95
    #: While sharing (see `QuotaEstimator._share`), a touch above the share cuts to the
    #: share or by this fraction, whichever is less: the run that holds more gives more
    #: back, so the split tends to the share instead of keeping what each run was
    #: admitted (a touch measures that: runs at 5.4 and 4.75 stayed so for the whole
    #: run). Seeds meeting E <= 1.05 and fairness >= 0.9 of 80 (ten, at --stagger 0, 0.1,
    #: 0.5 and 1, at 2 and 5 ms of jitter), and the worst fairness: 0.05 70 (0.87), 0.1 73
    #: (0.88), 0.15 73 (0.87), 0.2 74 (0.90), 0.3 73 (0.57). It also limits a bound on a run
    #: that shares from the start: near the share (at most a fifth under the band below)
    #: it cuts by this fraction at most, once per cool-down. The earlier run's calls can
    #: keep the rhythm of the service's bucket so that the late run takes every throttle
    #: for seconds; its bounds then took it to the floor (--stagger 0.75, seed 30:
    #: fairness 0.37). Not for a run that shares since another arrived (`arrival`): there
    #: it slowed a quota's drop (d: θ 1.40 -> 1.76 % over 30 seeds). Far under the share
    #: (a third caller, a quota that dropped) the bound applies as it is.
    share_cut: float = 0.2
    #: ... and a run within this fraction under the share is brought back to it by the
    #: probe's recovery (`recover`), whatever its own estimate says: without it a run
    #: that a touch left under kept that (0: --stagger 0.1 at 5 ms, one seed E 1.339,
    #: fairness 0.75). 0.1-0.25 give the same figures. Further under, the quota left to the run is
    #: smaller (a deaf caller, i), and its estimate stands.
    share_band: float = 0.15
    #: A run whose first wave, answered, says it was admitted more than the share by this
    #: fraction did not meet another run's burst but a lighter load (g: 8 of 10 beside a
    #: caller at 3/s): it is not sharing, and its touches step by the margin.
    share_guess: float = 0.3
    #: A run that shares since another arrived (`arrival`) and has had no throttle for
    #: this many seconds at about the share leaves the sharing and climbs (`climb`): it
    #: may have been alone all along, told a ceiling above its quota, whose first bound
    #: looks the same (told 10, 8.8/s, burst 10: E 1.005 -> 1.132 without this; 1.059
    #: with it). Beside another run at the share, a run's throttles come every 5-13 s,
    #: so a shorter wait leaves the sharing too soon: 4 s gave 219 of 360 seeds meeting E
    #: and fairness in (f) at six staggers (none: 320; before round 4: 218), 6 s 292.
    alone: float = 6.0


class QuotaEstimator:
    """The rate to send at, from the throttles and acceptances seen so far.

        estimator = QuotaEstimator(ceiling=10.0, floor=0.5)
        rate = estimator.throttled(now=3.2)

    :param ceiling: never more than this many calls per second (``limits.rate``); the start rate.
    :param floor: never less than this many calls per second.
    :param burst: the service's burst as told (``limits.burst``), if known: it tells a
        measured bound from one its bucket's overflow made (see `_admitted_at_least`).
    :param tuning: the constants; see `Tuning`.
    """

    __slots__ = (
        "_accepted",
        "_anchors",
        "_answers",
        "_cooldown_until",
        "_first_answer",
        "_first_burst",
        "_first_burst_throttles",
        "_first_call",
        "_guessed_at",
        "_guessing",
        "_last_probe",
        "_peak",
        "_shared_start",
        "_sharing",
        "_arrived",
        "_climbing",
        "_dropped_at",
        "_hold_until",
        "_paced_from",
        "_told",
        "burst_bound",
        "burst",
        "ceiling",
        "decreases_ignored",
        "estimate",
        "floor",
        "rate",
        "throttles",
        "tuning",
    )

    def __init__(self, *, ceiling: float, floor: float, burst: int | None = None, tuning: Tuning = Tuning()) -> None:
        self.ceiling = float(ceiling)
        self._told = self.ceiling  # the ceiling as told; `ceiling` is this run's part of it (`share`)
        self.burst = burst  # the service's burst as the user told it (`limits.burst`); None: unknown
        self.floor = float(floor)
        self.tuning = tuning
        self.rate = self.ceiling  # the target rate, calls/s
        self.estimate: float | None = None  # the last measured (or assumed) quota
        self.throttles = 0
        self.decreases_ignored = 0  # throttles inside the cool-down that moved nothing
        self.burst_bound: int | None = None  # the service's burst is at most this
        # times of accepted answers and of throttles, oldest first, within `window`
        self._accepted: deque[float] = deque()
        self._anchors: deque[float] = deque()
        self._cooldown_until = -math.inf
        self._last_probe: float | None = None
        self._guessing = False  # the estimate is a guess from the first throttle
        self._guessed_at = -math.inf
        self._first_call: float | None = None
        self._first_burst = 0  # calls sent before our bucket first made one wait
        self._first_burst_throttles = 0  # throttles known to answer one of those calls
        self._first_answer: float | None = None
        self._peak = 0  # the most the service admitted us in a second, seen at a throttle
        self._shared_start = False  # the start share applied: other runs started with us
        self._sharing = False  # another run shares the quota with us (see `_share`)
        self._arrived: float | None = None  # when another run arrived after ours (`Tuning.arrival`)
        self._climbing = False  # climbing towards the scale until the next throttle
        self._hold_until = -math.inf  # the start share holds until then
        self._dropped_at = -math.inf  # when a throttle last cut the estimate by a third or more
        self._answers = 0  # accepted answers so far
        self._paced_from: float | None = None  # when the first `burst` of them had come

    def accepted(self, now: float) -> None:
        """An answer that reached the service's bucket and used a token (anything but a
        throttle: 200, 409, 400, 5xx). A lost connection is not one."""
        self._accepted.append(now)
        self._answers += 1
        if self._paced_from is None and self.burst is not None and self._answers >= self.burst:
            self._paced_from = now  # the first burst's answers are in
        self._forget_before(now - self.tuning.window)
        if self._first_answer is None:
            self._first_answer = now

    def throttled(self, now: float, *, waited: bool = True, first_burst: bool | None = None) -> float:
        """A ThrottlingException arrived at `now`: returns the rate to send at.

        `waited`: our own bucket has made a caller wait at least once in the run.
        `first_burst`: the throttled call was sent before it did (one of the run's first
        burst), when the caller knows; None: unknown, judged from the counts."""
        t = self.tuning
        self._forget_before(now - t.window)
        self.throttles += 1
        self._climbing = False
        self._first_burst_throttles += bool(first_burst)
        if self._first_answer is None:
            self._first_answer = now
        share = self._start_share(now, first_burst)
        previous: float | None = None  # the last throttle of the previous episode
        if self._anchors and now - self._anchors[-1] > t.episode:
            # A quiet spell since the last throttle means we sent under the quota for a
            # while: the service's bucket may have filled and overflowed (with a small
            # burst, soon), so accepted counts since those anchors may under-measure its
            # refill. Start a new episode.
            previous = self._anchors[-1]
            self._anchors.clear()
        bound = self._measured_bound(now)
        self._anchors.append(now)
        lifted = None if share is None else min(share, t.start_share * self._first_burst)
        if share is not None and lifted is not None and lifted >= share:
            # Our first burst met another's in the service's bucket (and was no more than
            # our ceiling's worth: a lone burst told too big throttles itself, h).
            self._sharing = True
        if share is not None and share < self.rate * (1 - t.margin) and (bound is None or share < bound):
            # Runs started together: the share, not the bound (see `_start_share`), nor
            # a guess from our first burst (which measured our luck in the race for its
            # tokens: 8 of 10). Like the bound it is data, so it applies inside the
            # cool-down.
            self._guessing = False
            self._shared_start = True
            self._hold_until = now + t.start_hold
            estimate = share
        elif (
            lifted is not None
            and self._guessing
            and self.estimate is not None
            and lifted > self.estimate
            and (bound is None or lifted < bound)
        ):
            # ... nor a guess that lost the race (2 of 10): up to the share, but never
            # above the share of what our first burst sent, which is all that two runs
            # that collided can tell. A lone run whose burst was overstated looks the
            # same (10 of its first 16 admitted: its guess goes on rising to 10 with the
            # answers still coming in, above 16 × 1/2), and one that sent more than twice
            # the service's burst at once (32 into 10) is lifted above the quota until
            # its bound measures it: a few throttles, where a run that lost the race
            # and stayed on its guess kept a fifth of the quota for the whole run.
            self._hold_until = now + t.start_hold
            estimate = lifted
        elif self._arrival(now, bound):
            # Another run arrived after ours: the share, as if we had started together.
            self._sharing = True
            self._arrived = now
            estimate = self._share()
        elif now < self._hold_until:
            # The share holds for `start_hold` seconds: a bound measured now measures
            # the other run's rate too, before it has reacted (see `Tuning.start_hold`).
            self.decreases_ignored += 1
            return self.rate
        elif (
            self._sharing
            and self._arrived is None
            and bound is not None
            and bound < self.rate * (1 - t.margin)
            and bound >= self._share() * (1 - t.share_band) * (1 - t.share_cut)
        ):
            # Sharing since the start, a bound near the share: the other run took more
            # for a while, and will give it back (`Tuning.share_cut`). One cut per
            # cool-down, by `share_cut` at most.
            if now < self._cooldown_until:
                self.decreases_ignored += 1
                return self.rate
            estimate = max(bound, self.rate * (1 - t.share_cut))
        elif bound is not None and bound < self.rate * (1 - t.margin):
            # Overload: since an earlier throttle of this episode the service admitted
            # clearly less than we send (the start, a quota that dropped). The bound is
            # data, not a reaction, so it applies even inside the cool-down, and applying
            # it again does not compound.
            estimate = bound
        elif now >= self._cooldown_until:
            # A touch: we are at the quota, after a probe overshot it or by network
            # jitter against a nearly empty bucket. The rate we are at is too much, but a
            # probe overshoots the quota by what it added while draining the service's
            # bucket; the last estimate, or what was accepted since the previous episode
            # (exact if the bucket never overflowed, low if it did), is closer.
            estimate = self.rate
            known = [] if self.estimate is None else [self.estimate * (1 - t.margin)]
            if previous is not None and now > previous:
                known.append((self._accepted_between(previous, now) + 1) / (now - previous))
            if self.estimate is None and not waited and self._accepted_between(now - 1.0, now):
                # Throttled before our own bucket ever held a call back: the service's
                # burst is smaller than ours (an overstated `limits.burst`). Its bucket
                # started full, so the calls it admitted so far bound its burst; and a
                # service bucket holds about a second of its rate (AWS's quotas, and the
                # default burst = rate), so what it admitted in the last second is the
                # best guess of its rate until the anchors measure it. Without it the
                # first step down is the margin alone, and the rest of our burst and a
                # rate near the ceiling go into an empty bucket. (Nothing admitted is
                # no evidence: another caller may have emptied the bucket.)
                self._guessing = True
                self._guessed_at = now
                known.append(self._guess(now))
            if known:
                estimate = min(estimate, max(known))
            if self._sharing and self.rate > self._share():
                # Sharing: the run above the share gives back more (`Tuning.share_cut`).
                estimate = min(estimate, max(self._share(), self.rate * (1 - t.share_cut)))
        else:
            # Inside the cool-down: a storm of throttles from calls admitted before the
            # decrease must not compound it.
            self.decreases_ignored += 1
            return self.rate
        self._cooldown_until = now + t.cooldown
        if self.estimate is not None and estimate < (1 - t.drop) * self.estimate:
            self._dropped_at = now
        self.estimate = estimate
        self._peak = max(self._peak, self._accepted_between(now - 1.0, now))
        self._last_probe = now
        return self._set(estimate * (1 - t.margin))

    def share(self, count: int) -> float:
        """`count` runs on this host (this one included, `fleetrel.neighbours`) send to
        this quota now: this run's ceiling is the told one over `count`, each run's alike.
        Returns the rate to send at.

        What the throttles said of other callers is then known, not guessed: the sharing
        rules (`_share`, `Tuning.arrival`) start over from the new ceiling, and still read
        what runs elsewhere take. A part that shrank caps the rate at once (the newcomer
        starts at its part, with no burst: `RateController.share`); one that grew (a
        neighbour left) is taken at once, as it is the neighbour's rate, freed."""
        part = self._told / max(1, count)
        if part == self.ceiling:
            return self.rate
        grew = part > self.ceiling
        self.ceiling = part
        self._sharing = self._shared_start = self._climbing = False
        self._arrived = None
        self._hold_until = -math.inf
        if grew:
            # bounds measured at the smaller part would pull the run back under it
            self._anchors.clear()
            self.estimate = None
            return self._set(part)
        if self.estimate is not None:
            self.estimate = min(self.estimate, part)
        return self._set(min(self.rate, part))

    def first_wave_answered(self, now: float) -> float:
        """Every call of the run's first wave (those sent before its first answer) has
        answered: a guess from the first throttle counts all of their acceptances, even
        those later than `round_trip` (the wave's answers may be spread out; no call has
        left since, so nothing else is counted). Returns the rate to send at."""
        if self._guessing:
            self._guessing = False
            self._raise_guess(now)
        return self.rate

    def probe(self, now: float, waited_at: float) -> float:
        """Before a call at `now`; `waited_at` is when the bucket last made a caller wait.
        Returns the rate to send at: higher while the rate is what limits the run."""
        t = self.tuning
        if self._guessing:
            if now < self._guessed_at + t.round_trip:
                # The answers to the calls sent with the throttled one keep arriving for
                # a round trip after it: count them in.
                self._raise_guess(now)
            else:
                self._guessing = False
        last, self._last_probe = self._last_probe, now
        if self._first_call is None:
            self._first_call = now
        if waited_at == -math.inf:
            self._first_burst += 1
        if (
            last is None
            or self.rate >= self.ceiling
            or now < self._cooldown_until
            or now - waited_at > t.idle
        ):
            return self.rate
        reference = self.estimate if self.estimate is not None else self.rate
        if (
            self._sharing
            and self._arrived is not None
            and self._quiet(now) > t.alone
            and self.rate >= self._share() * (1 - t.share_band)
        ):
            # Quiet at the share for `alone` seconds since another run "arrived": maybe
            # none did (a ceiling above the quota reads the same at first). Climb.
            self._sharing = False
            self._climbing = True
        if self._sharing and now >= self._hold_until and reference >= self._share() * (1 - t.share_band):
            reference = max(reference, self._share())  # back to the share (`Tuning.share_band`)
        elapsed = now - max(last, self._cooldown_until)
        # Back towards the estimate with a time constant of `recover` seconds (the margin
        # under it was for jitter, not for ever), then slowly past it; once above it
        # without a throttle the excess grows geometrically, so a quota that was raised
        # is found in seconds.
        speed = (
            t.probe * reference
            + self._climb(now)
            + max(0.0, reference - self.rate) / t.recover
            + t.growth * max(0.0, self.rate - reference)
        )
        return self._set(self.rate + speed * elapsed)

    # -- the arithmetic -------------------------------------------------------------

    def _climb(self, now: float) -> float:
        """The climb towards the scale, calls/s per second (see `Tuning.climb`): it
        starts when the run is far under its scale and has been quiet a while, and
        lasts until the next throttle."""
        t = self.tuning
        scale = self._scale()
        if not self._climbing:
            if self.rate >= t.gate * scale or self._quiet(now) <= t.quiet or now < self._dropped_at + t.settle:
                return 0.0
            self._climbing = True
        return t.climb * max(0.0, scale - self.rate)

    def _quiet(self, now: float) -> float:
        """Seconds since the last throttle (since the first call if none)."""
        if self._anchors:
            return now - self._anchors[-1]
        return now - (self._first_call if self._first_call is not None else now)

    def _scale(self) -> float:
        """Calls/s that runs sharing a quota see alike: the ceiling (`limits.rate`, the
        quota as the user knows it), unless the run was never admitted half of it
        (`Tuning.overstated`; not a run whose first burst met another's: it shares)."""
        if self.estimate is None or self._shared_start or self._peak >= self.tuning.overstated * self.ceiling:
            return self.ceiling
        return min(self.ceiling, self._peak)

    def _share(self) -> float:
        """Calls/s a run sharing the quota with one other is due: half its scale, what
        the other run, told the same ceiling, computes alike."""
        return self._scale() * self.tuning.start_share

    def _arrival(self, now: float, bound: float | None) -> bool:
        """Whether this throttle's `bound` says another caller arrived after our run
        started (`Tuning.arrival`): a run that had the quota to itself (none of its first
        burst throttled, admitted at least half its ceiling, no drop just measured) now
        measures a bound clearly under its ceiling but above the share."""
        t = self.tuning
        return (
            not self._sharing
            and bound is not None
            and self._first_burst_throttles == 0
            and self._scale() >= self.ceiling
            and now >= self._dropped_at + t.settle
            and self.ceiling * t.start_share < bound < t.arrival * self.ceiling
        )

    def _set(self, rate: float) -> float:
        self.rate = min(self.ceiling, max(self.floor, rate))
        return self.rate

    def _start_share(self, now: float, first_burst: bool | None) -> float | None:
        """The rate for runs that started together, or None if this is not that.

        Their first bursts meet one bucket and the service admits them first come first
        served, so how many of ten tokens each run gets is a race, and each run's bound
        (or its admitted fraction) measures its luck: a 7:3 split would last the whole
        run. Cutting every such run to the same fraction of its ceiling instead keeps
        runs that started equal, equal.
        """
        t = self.tuning
        if self._first_call is None or self._first_answer is None or self.throttles < 2:
            return None
        # Only throttles answering our first burst: sent before our first answer came
        # back, they arrive within two round trips of the first call. Later ones are
        # the bucket running dry under our rate (another caller's steady share, or
        # the quota itself): the bound measures those.
        if now - self._first_call > t.start * (self._first_answer - self._first_call):
            return None
        # ... and only throttles of the first burst's own calls. A lone run whose burst
        # all got through, then lost a few paced calls (its burst reached a busy service
        # late: the refill of that delay did not fit in the full bucket; 20 or 40 targets
        # at once against one emulator, answers 0.4-0.8 s late) is not sharing: halving
        # it cost every target a third to a half of its time while the probe climbed
        # back. The caller knows which calls those were; without it, the counts say
        # whether the answers to that burst are still coming in.
        if first_burst is not None:
            if not first_burst or self._first_burst_throttles < 2:
                return None
        elif self.throttles + len(self._accepted) > self._first_burst:
            return None
        return self.ceiling * t.start_share

    def _raise_guess(self, now: float) -> None:
        """Up to the guess from what was admitted in the last second, if that is higher."""
        guess = self._guess(now)
        if guess > (self.estimate or 0.0):
            if guess > self.ceiling * self.tuning.start_share * (1 + self.tuning.share_guess):
                self._sharing = False  # admitted more than a share: a lighter load (`Tuning.share_guess`)
            self.estimate = guess
            self._set(guess * (1 - self.tuning.margin))

    def _guess(self, now: float) -> float:
        """The service's rate if its bucket holds a second's worth: what it admitted
        in the last second. Also bounds its burst."""
        admitted = self._accepted_between(now - 1.0, now)
        self.burst_bound = max(1, admitted, self.burst_bound or 1)
        return max(self.floor, float(admitted))

    def _forget_before(self, horizon: float) -> None:
        while self._accepted and self._accepted[0] <= horizon:
            self._accepted.popleft()
        while self._anchors and self._anchors[0] <= horizon:
            self._anchors.popleft()

    def _accepted_between(self, start: float, end: float) -> int:
        """Accepted answers in (start, end]."""
        return bisect.bisect_right(self._accepted, end) - bisect.bisect_right(self._accepted, start)

    def _measured_bound(self, now: float) -> float | None:
        """Tightest upper bound on the rate the service admits to this run, from earlier
        throttles of this episode.

        The service's bucket held less than one token at each throttle. Between an
        earlier throttle ``a`` and this one it admitted what it refilled, so
        ``accepted(a, now] >= rate * (now - a) - 1``. Any anchor gives an upper bound; a
        young anchor a loose one, an old one a tight one, and a recent anchor follows a
        quota that just dropped. Unless the bucket filled up meanwhile and lost refill:
        a bound under what the service was seen to admit (`_admitted_at_least`) is that.
        """
        best: float | None = None
        least = self._admitted_at_least(now)
        for anchor in self._anchors:
            span = now - anchor
            if span <= 0:
                continue
            bound = (self._accepted_between(anchor, now) + 1) / span
            if (best is None or bound < best) and bound * (1 + self.tuning.margin) >= least:
                best = bound

        return best

    def _admitted_at_least(self, now: float) -> float:
        """A rate the service's bucket refilled at, at least, in the last episode: if it
        admitted B + k calls in d seconds (B its burst as told), k/d. 0 if unknown.

        The count bound above counts on the bucket never filling between two throttles.
        With a burst of B it fills in a lull of about B/R; with a burst of one (scenario
        e) in any gap longer than 1/R, a slot lost to a throttle or to jitter. Two lost
        slots in the first seven at 19/s of 20 read 16.5/s; four in the first ten, with
        a young anchor between them, 14/s; the run sat there for 12 s while the probe
        climbed back (simulate.py e, jitter 5 ms: E 1.24). Calls 1/19 s apart say 19/s or
        more. Up to `Tuning.dense` gaps: one of 50 ms moves by 10 % with 5 ms of jitter,
        four by 2-3 %. Not the run's first burst: admitted at once from what the service
        had saved, it says the service's rate, not the share of it left to this run once
        another caller comes (simulate.py f, 0.5 s apart, 5 ms: the earlier run's bound
        of 7.8/s at 2 s was its share). Past it, with a burst of 10 at 10/s, 11 to 14
        calls take a second or more and say 1-3/s, under any bound that matters. A burst
        told smaller than the service's reads high here and keeps bounds out; touches
        then step the rate down by the margin instead."""
        if self.burst is None or self._paced_from is None:
            return 0.0
        start = max(now - self.tuning.episode, self._paced_from)
        times = list(itertools.islice(self._accepted, bisect.bisect_right(self._accepted, start), None))
        least = 0.0
        for k in range(1, self.tuning.dense + 1):
            apart = self.burst + k - 1  # index distance of B + k calls
            for end in range(apart, len(times)):
                stretch = times[end] - times[end - apart]
                if stretch > 0:
                    least = max(least, k / stretch)
        return least
