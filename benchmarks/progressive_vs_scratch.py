"""Progressive widening (partial, net2net) against training the same final width from scratch.

Every mode trains for the same number of epochs in all (stages x epochs per stage); the
progressive ones spend most of them on narrower networks. Runs are interleaved (seed by
seed, mode by mode) so machine drift hits all modes alike; the table gives the median wall
time, its ratio to scratch, and the final validation accuracy (mean and spread over seeds).

    python -m benchmarks.progressive_vs_scratch [--widths 32-64-128-128-256] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from search.config import DataConfig, FullTrainConfig, ModelConfig, parse_int_list
from search.data import load
from search.progressive import train_full

MODES = ("partial", "net2net", "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="32-64-128-128-256")
    parser.add_argument("--stages", type=int, default=FullTrainConfig().stages)
    parser.add_argument("--epochs-per-stage", type=int, default=FullTrainConfig().epochs_per_stage)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dataset", default="digits")
    args = parser.parse_args()

    widths = parse_int_list(args.widths, "width")
    data = load(DataConfig(dataset=args.dataset))
    print(f"{args.dataset}: {len(data.y_train)} train / {len(data.y_val)} val images, widths {args.widths}, "
          f"{args.stages} stages x {args.epochs_per_stage} epochs, {args.seeds} seeds, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    accuracy: dict[str, list[float]] = {mode: [] for mode in MODES}
    for seed in range(args.seeds):
        for mode in MODES:
            config = FullTrainConfig(mode=mode, stages=args.stages, epochs_per_stage=args.epochs_per_stage)
            start = time.perf_counter()
            result, _ = train_full(widths, data, ModelConfig(), config, seed=seed)
            seconds[mode].append(time.perf_counter() - start)
            accuracy[mode].append(result.val_acc)

    scratch = statistics.median(seconds["none"])
    print(f"{'mode':<8} {'epochs at full width':>20} {'median s':>9} {'/ scratch':>9} {'val_acc mean':>12} "
          f"{'min':>6} {'max':>6}")
    for mode in MODES:
        full_epochs = args.epochs_per_stage * (args.stages if mode == "none" else 1)
        median = statistics.median(seconds[mode])
        accs = accuracy[mode]
        print(f"{mode:<8} {full_epochs:>20} {median:9.2f} {median / scratch:9.3f} {statistics.mean(accs):12.4f} "
              f"{min(accs):6.4f} {max(accs):6.4f}")


if __name__ == "__main__":
    main()
