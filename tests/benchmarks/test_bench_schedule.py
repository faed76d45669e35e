"""Interleaved scheduling: call order, block size, re-warm calls and both stopping rules."""

from __future__ import annotations

from benchmarks.latency import measure_interleaved


class FakeClock:
    """A nanosecond clock that advances by `step` every time it is read."""

    def __init__(self, step: int):
        self.now = 0
        self.step = step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def recorder(log, name):
    return lambda: log.append(name)


def test_one_call_per_turn_alternates():
    log = []
    samples, rounds, _ = measure_interleaved(
        [recorder(log, "A"), recorder(log, "B")], runs=3, min_seconds=0, block=1, rewarm=False
    )
    assert log == ["A", "B", "A", "B", "A", "B"]
    assert rounds == 3
    assert [len(s) for s in samples] == [3, 3]


def test_blocks_start_with_an_untimed_rewarm_call():
    log = []
    samples, rounds, _ = measure_interleaved(
        [recorder(log, "A"), recorder(log, "B"), recorder(log, "C")], runs=4, min_seconds=0, block=2, rewarm=True
    )
    # two rounds; each turn = 1 re-warm + 2 timed calls
    assert log == ["A"] * 3 + ["B"] * 3 + ["C"] * 3 + ["A"] * 3 + ["B"] * 3 + ["C"] * 3
    assert rounds == 2
    assert [len(s) for s in samples] == [4, 4, 4]


def test_runs_are_rounded_up_to_whole_blocks():
    samples, rounds, _ = measure_interleaved([lambda: None], runs=5, min_seconds=0, block=2, rewarm=False)
    assert rounds == 3 and len(samples[0]) == 6


def test_keeps_going_until_min_seconds():
    # Each clock read advances 10 ms. Per round with one call and no re-warm:
    # the loop condition reads once, the call is timed with two reads: 30 ms per
    # round, so 1 s of wall time needs many more rounds than runs=2.
    clock = FakeClock(step=10_000_000)
    samples, rounds, elapsed = measure_interleaved(
        [lambda: None], runs=2, min_seconds=1.0, block=1, rewarm=False, clock=clock
    )
    assert rounds > 2
    assert elapsed >= 1_000_000_000
    assert all(sample == 10_000_000 for sample in samples[0])  # begin and end reads are one step apart


def test_runs_bound_holds_when_time_is_already_up():
    clock = FakeClock(step=10**9)  # every read is a second later
    samples, rounds, _ = measure_interleaved([lambda: None, lambda: None], runs=7, min_seconds=0.5, clock=clock, block=1)
    assert rounds == 7 and [len(s) for s in samples] == [7, 7]
