"""search/workers.py: full trainings in worker processes, as validate --workers runs them."""

import torch

from search.config import DataConfig, FullTrainConfig, ModelConfig
from search.data import load
from search.workers import FullJob, train_many

JOBS = [FullJob((4, 8), 0), FullJob((8, 4), 0), FullJob((4, 8), 1)]
FULL = FullTrainConfig(mode="none", stages=1, epochs_per_stage=2, batch_size=64)


def test_workers_train_what_this_process_trains_and_say_how_many_ran_at_once() -> None:
    data = load(DataConfig(dataset="synthetic", synthetic_train=256, synthetic_val=128), seed=0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as each of the two workers below: the same arithmetic, bit for bit
        alone = list(train_many(JOBS, data, ModelConfig(), FULL, workers=1))
        torch.set_num_threads(2)
        at_once = dict(train_many(JOBS, data, ModelConfig(), FULL, workers=2))
    finally:
        torch.set_num_threads(threads)
    assert [job for job, _ in alone] == JOBS  # one at a time: in order
    assert set(at_once) == set(JOBS)
    for job, outcome in alone:
        assert outcome.workers == 1 and outcome.device == "cpu" and outcome.seconds > 0
        assert at_once[job].workers == 2 and at_once[job].device == "cpu" and at_once[job].seconds > 0
        assert at_once[job].val_acc == outcome.val_acc
    assert len({outcome.val_acc for _, outcome in alone}) > 1  # the jobs differ: the check above can fail


def test_more_workers_than_jobs_start_only_as_many_as_there_are_jobs() -> None:
    data = load(DataConfig(dataset="synthetic", synthetic_train=128, synthetic_val=64), seed=0)
    ((job, outcome),) = train_many(JOBS[:1], data, ModelConfig(), FULL, workers=4)
    assert job == JOBS[0] and outcome.workers == 1  # one job: trained here, not in a pool of one
