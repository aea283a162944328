"""Shared helpers for the benchmark scripts: timing side by side, in one process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(jobs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each job, run in turns (A B A B ...) so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for job in jobs.values():  # warm-up: allocator, kernels, first-call costs
        job()
    for _ in range(repeats):
        for name, job in jobs.items():
            start = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
