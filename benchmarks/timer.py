"""The harness's interleaved timer: every configuration timed in turns, so drift reaches them all alike."""

from __future__ import annotations

import time
from typing import Callable, Sequence

# A safety stop for --min-seconds with very fast configurations.
MAX_ROUNDS = 1_000_000

Clock = Callable[[], int]


def measure_interleaved(
    calls: Sequence[Callable[[], object]],
    runs: int,
    min_seconds: float,
    block: int = 1,
    rewarm: bool = True,
    clock: Clock = time.perf_counter_ns,
) -> tuple[list[list[int]], int, int]:
    """Times the calls in interleaved rounds until both stopping rules hold.

    Each round gives every call its turn in the same order (A B C, A B C, ...);
    a turn is one untimed re-warm call (unless `rewarm` is False) and then
    `block` timed calls. The re-warm call pays for the caches the previous
    configuration evicted, so the timed calls show the latency of repeated
    calls (as LiteRT's benchmark_model does) while slow drift of the machine
    still reaches every configuration alike.

    Args:
        calls: one callable per configuration.
        runs: minimum timed samples per call.
        min_seconds: minimum wall time of all rounds together.
        block: timed calls per turn.
        rewarm: run one untimed call at the start of every turn.
        clock: nanosecond clock (injectable for tests).

    Returns:
        (samples per call in nanoseconds, rounds run, total nanoseconds).
    """
    samples: list[list[int]] = [[] for _ in calls]
    min_ns = int(min_seconds * 1e9)
    start = clock()
    rounds = 0
    while rounds < MAX_ROUNDS and (rounds * block < runs or clock() - start < min_ns):
        for call, call_samples in zip(calls, samples):
            if rewarm:
                call()
            for _ in range(block):
                begin = clock()
                call()
                call_samples.append(clock() - begin)
        rounds += 1
    return samples, rounds, clock() - start
