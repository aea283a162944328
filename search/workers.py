"""Full trainings N at a time, in spawned worker processes that share one copy of the data.

On a GPU one small convnet's training keeps a few per cent of the card busy, so trainings
one after another leave it mostly idle: 14 at once on one H100 finished a 6-epoch training
every 0.35-0.44 s against 0.9-1.5 s one at a time (benchmarks/FIDELITY.md, "Six ground truths"). On a CPU
the workers split its cores between them instead.

The workers only train and return numbers; the caller writes them wherever they go (the
full-training cache, MLflow), so a store has one writer. Each outcome records how many
trainings ran at once while it was timed: its seconds are longer than alone.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from search.config import FullTrainConfig, ModelConfig
from search.data import TensorData
from search.progressive import train_full


@dataclass(frozen=True)
class FullJob:
    widths: tuple[int, ...]
    seed: int


@dataclass(frozen=True)
class FullOutcome:
    val_acc: float
    seconds: float  # wall time of the training (longer than alone when workers > 1)
    device: str  # "cpu", "cuda"
    workers: int  # trainings that ran at once, at most, while this one was timed


def train_many(jobs: Sequence[FullJob], data: TensorData, model: ModelConfig, full: FullTrainConfig,
               workers: int = 1) -> Iterator[tuple[FullJob, FullOutcome]]:
    """Train each job with ``train_full``; yield each with its outcome as it ends.

    ``workers`` <= 1 (or one job): one after another in this process, in order. Otherwise
    ``min(workers, len(jobs))`` spawned processes on the data's device, in the order they end,
    each with an equal share of this process's CPU threads (at least one). Closing the
    iterator early, or an error in a training, stops the workers (they ignore Ctrl-C, which is
    the caller's to handle); outcomes already yielded are the caller's to keep.
    """
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        for job in jobs:
            yield job, _train(job, data, model, full, 1)
        return
    threads = max(1, torch.get_num_threads() // workers)
    device = str(data.x_train.device)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    with context.Pool(workers, initializer=_start_worker,
                      initargs=(data.to("cpu"), device, model, full, threads, workers)) as pool:
        yield from pool.imap_unordered(_run_job, jobs)


def _train(job: FullJob, data: TensorData, model: ModelConfig, full: FullTrainConfig,
           workers: int) -> FullOutcome:
    result, _ = train_full(job.widths, data, model, full, job.seed)
    return FullOutcome(result.val_acc, result.seconds, data.x_train.device.type, workers)


_worker: dict = {}  # one worker process's data and settings, set once by _start_worker


def _start_worker(data: TensorData, device: str, model: ModelConfig, full: FullTrainConfig, threads: int,
                  workers: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _worker.update(data=data.to(device), model=model, full=full, workers=workers)


def _run_job(job: FullJob) -> tuple[FullJob, FullOutcome]:
    return job, _train(job, _worker["data"], _worker["model"], _worker["full"], _worker["workers"])
