"""Full trainings one at a time against N at a time (``search validate --workers N``).

``validate`` trains every candidate in full with several seeds: the ground truth is most of
its cost. ``search/workers.py`` runs N trainings at once in spawned processes that share the
data. This trains the same jobs (profiles sampled as validate samples them, 5 layers of
{4..96}, each with two seeds) both ways, one after the other in one run, and prints the wall
time of each, the trainings per minute and their ratio, and how much longer one training
took while N ran. On a CPU the workers split its cores; on a GPU they fill a card that one
small training leaves mostly idle.

    python -m benchmarks.validate_workers [--workers 2] [--profiles 6] [--dataset textures]
        [--train 2000 --val 500] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import sized_data
from search.config import FullTrainConfig, ModelConfig, SpaceConfig
from search.data import load
from search.session import resolve_device
from search.validate import sample_profiles
from search.workers import FullJob, train_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profiles", type=int, default=6, help="each trained with seeds 0 and 1")
    parser.add_argument("--dataset", default="textures", help="textures, shapes or synthetic (generated to any size)")
    parser.add_argument("--train", type=int, default=2000, help="training images")
    parser.add_argument("--val", type=int, default=500, help="validation images")
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--epochs-per-stage", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = resolve_device(args.device)
    data = load(sized_data(args.dataset, train=args.train, val=args.val), seed=0).to(device)
    space = SpaceConfig(layers=5, width_choices=(4, 8, 16, 32, 64, 96))
    jobs = [FullJob(widths, seed) for widths in sample_profiles(space, args.profiles, 0) for seed in (0, 1)]
    full = FullTrainConfig(mode="none", stages=args.stages, epochs_per_stage=args.epochs_per_stage)
    print(f"{len(jobs)} full trainings ({args.profiles} profiles x 2 seeds) of {args.dataset} {args.train}/{args.val}, "
          f"{args.stages} x {args.epochs_per_stage} epochs from scratch; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {device}")
    list(train_many(jobs[:1], data, ModelConfig(), full, workers=1))  # warm-up: first-call costs
    rows = []
    for workers in (1, args.workers):
        start = time.perf_counter()
        outcomes = [outcome for _, outcome in train_many(jobs, data, ModelConfig(), full, workers=workers)]
        wall = time.perf_counter() - start
        each = statistics.mean(o.seconds for o in outcomes)
        rows.append((workers, wall, each))
        print(f"  {workers:>2} at a time: {wall:6.1f} s wall, {60 * len(jobs) / wall:6.1f} trainings/min, "
              f"one training {each:.2f} s on average", flush=True)
    (_, alone, each_alone), (_, together, each_together) = rows
    print(f"{args.workers} at a time trains {alone / together:.2f}x as many per minute as one at a time; "
          f"one training takes {each_together / each_alone:.2f}x as long while {args.workers} run "
          "(what validate's cost/full divides by)")


if __name__ == "__main__":
    main()
