"""How fast one scheduler's workers may hand messages to the provider, all together.

- `max_per_second`: messages are spaced evenly at that rate. Each message takes
  the next free slot (virtual scheduling, as in GCRA), so over any stretch the
  rate is the limit and there is no burst after a pause.
- `max_per_hour`: at most that many in any sliding hour, counted in one-second
  buckets.
- `slow_down()`: the provider asked for it (SendGrid's 429, an SMTP 421 or
  451). The pace halves, from the limit or, with none set, from the rate of the
  last ten seconds, stays there for `HOLD` seconds, then doubles back every
  `HOLD / 6` seconds until it is whole again.

The limits hold across one scheduler's workers, not across schedulers: two
schedulers sharing a provider's quota each need half of it (README, "Sending
fast").
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

HOLD = 60.0  # seconds the pace stays lowered after the provider asked us to slow down
MEASURE = 10.0  # seconds of history behind "the rate of late", used when no limit is set
SLOWEST = 1.0  # messages per second: slowing down never goes below this


class Pace:
    def __init__(self, per_second: float = 0.0, per_hour: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second if per_second > 0 else None
        self.per_hour = per_hour if per_hour > 0 else None
        self.clock = clock
        self._lock = threading.Lock()
        self._next = 0.0  # the next free slot under the per-second rate
        self._hour: collections.deque[list[float]] = collections.deque()  # [second, count], oldest first
        self._in_hour = 0
        self._recent: collections.deque[tuple[float, int]] = collections.deque()  # (when, count), the last MEASURE seconds
        self._slowed: float | None = None  # the lowered rate, messages per second
        self._slowed_at = 0.0

    def rate(self) -> float | None:
        """Messages per second allowed now (None: no limit): the limit, lowered while the provider wants us slower."""
        with self._lock:
            return self._rate(self.clock())

    def _rate(self, now: float) -> float | None:
        if self._slowed is None:
            return self.per_second
        steps = int(max(0.0, now - self._slowed_at - HOLD) // (HOLD / 6))
        lowered = self._slowed * 2.0**steps
        if (self.per_second is not None and lowered >= self.per_second) or steps > 12:
            self._slowed = None  # back to the whole pace
            return self.per_second
        return lowered

    def reserve(self, count: int = 1) -> float:
        """Book the next slot for `count` messages; returns the seconds to wait before sending them."""
        with self._lock:
            now = self.clock()
            start = now
            rate = self._rate(now)
            if rate:
                start = max(now, self._next)
                self._next = start + count / rate
            if self.per_hour:
                start = self._hour_room(start, count)
            self._remember(start, count)
            return start - now

    def wait(self, count: int = 1, stop: threading.Event | None = None) -> bool:
        """Block until `count` more messages may go. False when there was a wait and
        `stop` was set before it ended: send nothing then (a stopping scheduler does
        not sit out a long wait for its pace)."""
        delay = self.reserve(count)
        if delay <= 0:
            return True
        if stop is not None:
            return not stop.wait(delay)
        time.sleep(delay)
        return True

    def slow_down(self, pause: float = 0.0) -> None:
        """The provider asked us to slow down: halve the pace for a while, and send
        nothing for `pause` seconds when it said how long (SendGrid's X-RateLimit-Reset)."""
        with self._lock:
            now = self.clock()
            current = self._rate(now) or self._measured(now)
            self._slowed = max(current / 2, SLOWEST)
            self._slowed_at = now
            self._next = max(self._next, now + pause)

    def _measured(self, now: float) -> float:
        while self._recent and self._recent[0][0] < now - MEASURE:
            self._recent.popleft()
        if not self._recent:
            return 0.0
        return sum(count for _, count in self._recent) / max(now - self._recent[0][0], 1.0)

    def _remember(self, when: float, count: int) -> None:
        self._recent.append((when, count))
        while self._recent[0][0] < when - MEASURE:
            self._recent.popleft()
        if self.per_hour:
            second = float(int(when))
            if self._hour and self._hour[-1][0] == second:
                self._hour[-1][1] += count
            else:
                self._hour.append([second, count])
            self._in_hour += count

    def _hour_room(self, start: float, count: int) -> float:
        """The earliest time from `start` at which `count` more fit in the sliding hour."""
        hour = self.per_hour or 0
        while self._hour and self._hour[0][0] <= start - 3600:
            self._in_hour -= int(self._hour.popleft()[1])
        if self._in_hour + count <= hour or not self._hour:
            return start
        freed = 0
        for second, sent in self._hour:
            freed += int(sent)
            if self._in_hour - freed + count <= hour:
                return max(start, second + 3600)
        return max(start, self._hour[-1][0] + 3600)
