"""Shared helpers for the benchmark scripts: timing side by side, in one process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from search.config import DataConfig

# The generated datasets' size fields in DataConfig: training images, validation images, side.
GENERATED_SIZES = {"textures": ("texture_train", "texture_val", "texture_size"),
                   "shapes": ("shapes_train", "shapes_val", "shapes_size"),
                   "synthetic": ("synthetic_train", "synthetic_val", "synthetic_image_size")}


def sized_data(dataset: str, train: int | None = None, val: int | None = None, size: int | None = None) -> DataConfig:
    """``dataset`` with the sizes given (None: its default); sizes apply to the generated datasets only.

    Example:
        >>> sized_data("shapes", train=8000, size=28).shapes_train, sized_data("digits", train=8000).dataset
        (8000, 'digits')
    """
    fields = GENERATED_SIZES.get(dataset, ())  # none for digits and torchvision datasets: zip stops
    chosen = {field: value for field, value in zip(fields, (train, val, size), strict=False) if value is not None}
    return DataConfig(dataset=dataset, **chosen)  # type: ignore[arg-type]


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
