"""The pace a scheduler's workers keep together: limits per second and per hour, and slowing down when asked."""

from __future__ import annotations

import itertools
import threading

from newsletter.pace import HOLD, Pace


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_max_per_second_spaces_messages_evenly_at_exactly_that_rate() -> None:
    clock = Clock()
    pace = Pace(per_second=20, clock=clock)
    starts = [clock.now + pace.reserve() for _ in range(100)]
    assert starts[0] == clock.now, "the first goes at once"
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(starts)}
    assert gaps == {0.05}, "one every 1/20 s, never a burst"
    assert round(99 / (starts[-1] - starts[0]), 6) == 20


def test_a_batch_takes_as_many_slots_as_it_has_recipients() -> None:
    clock = Clock()
    pace = Pace(per_second=100, clock=clock)
    assert pace.reserve(1000) == 0
    assert pace.reserve(1000) == 10.0, "the next request waits until the first one's thousand slots are used"


def test_workers_on_several_threads_share_one_pace_and_never_share_a_slot() -> None:
    clock = Clock()
    pace = Pace(per_second=50, clock=clock)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(250):
            delay = pace.reserve()
            with lock:
                starts.append(delay)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(round(s * 50) for s in starts) == list(range(1000)), "a thousand distinct slots, 1/50 s apart"


def test_max_per_hour_lets_the_hour_fill_then_waits_for_the_first_to_leave_the_window() -> None:
    clock = Clock()
    pace = Pace(per_hour=5, clock=clock)
    assert [pace.reserve() for _ in range(5)] == [0.0] * 5
    clock.now += 600
    assert pace.reserve() == 3000.0, "the sixth waits until an hour after the first five"
    clock.now += 3000
    assert pace.reserve() == 0.0, "an hour after the first five, there is room again"


def test_both_limits_hold_together() -> None:
    clock = Clock()
    pace = Pace(per_second=10, per_hour=3, clock=clock)
    assert [round(pace.reserve(), 3) for _ in range(3)] == [0.0, 0.1, 0.2]
    assert pace.reserve() >= 3599


def test_slowing_down_halves_the_pace_for_a_while_then_it_climbs_back() -> None:
    clock = Clock()
    pace = Pace(per_second=40, clock=clock)
    pace.slow_down()
    assert pace.rate() == 20
    pace.slow_down()
    assert pace.rate() == 10, "asked again, slower again"
    clock.now += HOLD - 1
    assert pace.rate() == 10, "it stays lowered for a while"
    clock.now += 1 + HOLD / 6
    assert pace.rate() == 20, "then doubles back step by step"
    clock.now += HOLD / 6
    assert pace.rate() == 40, "until it is whole again, never above the limit"
    clock.now += HOLD * 10
    assert pace.rate() == 40


def test_slowing_down_without_a_limit_starts_from_the_rate_of_late() -> None:
    clock = Clock()
    pace = Pace(clock=clock)
    assert pace.rate() is None
    for _ in range(100):
        pace.reserve()
        clock.now += 0.01  # 100 a second
    pace.slow_down()
    assert 45 <= (pace.rate() or 0) <= 55, "about half of what it was doing"
    clock.now += HOLD + 13 * HOLD / 6
    assert pace.rate() is None, "and in time no limit again"


def test_a_stop_while_waiting_sends_nothing() -> None:
    pace = Pace(per_second=1)
    stop = threading.Event()
    assert pace.wait(stop=stop)
    stop.set()
    assert not pace.wait(stop=stop), "stopped: the message must not go"


def test_a_pause_asked_for_holds_every_worker_until_it_ends() -> None:
    clock = Clock()
    pace = Pace(clock=clock)
    pace.slow_down(pause=5.0)
    assert pace.reserve() == 5.0, "nothing until the provider's reset"
    assert pace.reserve() > 5.0, "and then at the lowered pace"
