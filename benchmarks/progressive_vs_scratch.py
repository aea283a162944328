"""Progressive widening (partial, net2net) against training the same final width from scratch.

Every mode trains for the same number of epochs in all (stages x epochs per stage); the
progressive ones spend most of them on narrower networks, so they take less time. To compare
at equal time, scratch also runs for fewer epochs (``--scratch-epochs``, default 3/4 of the
total: about the widening's time with two stages). Runs are interleaved (seed by seed, mode
by mode) so machine drift hits all modes alike; the table gives the median wall time, its
ratio to scratch for the full epochs, and the validation accuracy of the model kept (mean
and spread over seeds).

    python -m benchmarks.progressive_vs_scratch [--widths 32-64-128-128-256] [--seeds 3] [--scratch-epochs 9]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from search.config import DataConfig, FullTrainConfig, ModelConfig, parse_int_list
from search.data import load
from search.progressive import train_full

MODES = ("partial", "net2net")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="32-64-128-128-256")
    parser.add_argument("--stages", type=int, default=FullTrainConfig().stages)
    parser.add_argument("--epochs-per-stage", type=int, default=FullTrainConfig().epochs_per_stage)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--scratch-epochs", metavar="E,E", help="shorter from-scratch runs beside the one of "
                        "stages x epochs-per-stage epochs (default: 3/4 of that)")
    args = parser.parse_args()

    widths = parse_int_list(args.widths, "width")
    total = args.stages * args.epochs_per_stage
    shorter = [round(total * 3 / 4)] if args.scratch_epochs is None else \
        [e for e in parse_int_list(args.scratch_epochs, "epoch count") if e < total]
    # (label, config): the widening modes, then scratch for the full epochs and for fewer.
    runs = [(mode, FullTrainConfig(mode=mode, stages=args.stages, epochs_per_stage=args.epochs_per_stage))
            for mode in MODES]
    runs += [(f"none {epochs}", FullTrainConfig(mode="none", stages=1, epochs_per_stage=epochs))
             for epochs in [total, *shorter]]
    data = load(DataConfig(dataset=args.dataset))
    print(f"{args.dataset}: {len(data.y_train)} train / {len(data.y_val)} val images, widths {args.widths}, "
          f"{args.stages} stages x {args.epochs_per_stage} epochs, {args.seeds} seeds, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    seconds: dict[str, list[float]] = {label: [] for label, _ in runs}
    accuracy: dict[str, list[float]] = {label: [] for label, _ in runs}
    for seed in range(args.seeds):
        for label, config in runs:
            start = time.perf_counter()
            result, _ = train_full(widths, data, ModelConfig(), config, seed=seed)
            seconds[label].append(time.perf_counter() - start)
            accuracy[label].append(result.val_acc)

    scratch = statistics.median(seconds[f"none {total}"])
    print(f"{'mode':<9} {'epochs at full width':>20} {'median s':>9} {'/ scratch':>9} {'val_acc mean':>12} "
          f"{'min':>6} {'max':>6}")
    for label, config in runs:
        full_epochs = config.epochs_per_stage
        median = statistics.median(seconds[label])
        accs = accuracy[label]
        print(f"{label:<9} {full_epochs:>20} {median:9.2f} {median / scratch:9.3f} {statistics.mean(accs):12.4f} "
              f"{min(accs):6.4f} {max(accs):6.4f}")


if __name__ == "__main__":
    main()
