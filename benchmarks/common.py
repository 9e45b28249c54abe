"""Shared helpers for the benchmarks: a timer that reports a median, and the table header."""
from __future__ import annotations

import statistics
import time
from typing import Callable

from dalle_lessons.environment import machine_summary


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` runs, after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def best_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """The fastest of `repeats` runs, after `warmup` untimed runs: on a shared CPU the quietest run is the
    closest to the true cost (use it for ratios between variants measured side by side)."""
    for _ in range(warmup):
        fn()
    return min(_timed(fn) for _ in range(repeats))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def header(title: str) -> str:
    return f"## {title}\nmachine: {machine_summary()}\n"
