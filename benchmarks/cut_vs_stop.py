"""A full training that does not fit its time: the recipe stopped after k epochs, or a schedule
cut to k epochs that decays to its own end?

The second phase stops a candidate before an epoch that would overrun its share and keeps its
best epoch (``search.full.train_candidate``). The alternative is to plan fewer epochs up
front, so that the cosine decay reaches zero. For each profile, seed and k, both are trained
from the same seed: the recipe (``FullTrainConfig``'s defaults) stopped after k epochs, best
epoch kept, and the recipe with ``epochs=k``. The table gives the accuracy of the model kept,
mean and spread over profiles and seeds, and in how many pairs the cut schedule was better.

    python -m benchmarks.cut_vs_stop [--dataset textures] [--train 8000] [--cuts 3,6] [--seeds 2]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import torch

from benchmarks.common import sized_data
from search.config import FullTrainConfig, ModelConfig, parse_int_list
from search.data import load
from search.progressive import train_full
from search.train import EpochMetrics, StopTraining

PROFILES = "16-32-32-64-64,8-16-32-32-64,32-64-64-96-96"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="textures")
    parser.add_argument("--train", type=int, default=8000, help="training images (textures, shapes, synthetic)")
    parser.add_argument("--profiles", default=PROFILES, help="comma-separated width profiles")
    parser.add_argument("--cuts", default="3,6", help="epochs k the time allows")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()

    recipe = FullTrainConfig()
    profiles = [parse_int_list(p, "width") for p in args.profiles.split(",")]
    cuts = parse_int_list(args.cuts, "epoch count")
    data = load(sized_data(args.dataset, train=args.train))
    print(f"{args.dataset}: {len(data.y_train)} train / {len(data.y_val)} val images, recipe {recipe.describe()}, "
          f"{len(profiles)} profiles x {args.seeds} seeds, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    stopped: dict[int, list[float]] = {k: [] for k in cuts}
    cut: dict[int, list[float]] = {k: [] for k in cuts}
    for widths in profiles:
        for seed in range(args.seeds):
            # One recipe run, stopped after the largest k: stopped after a smaller k, it would have
            # kept the best of its first k epochs (the same seed trains the same epochs).
            def stop_after(stage: int, metrics: EpochMetrics) -> None:
                if metrics.epoch >= max(cuts):
                    raise StopTraining(f"stopped after epoch {max(cuts)}")

            run, _ = train_full(widths, data, ModelConfig(), recipe, seed, on_epoch=stop_after)
            accuracies = [m.val_acc for stage in run.stages for m in stage.history]
            for k in cuts:
                short, _ = train_full(widths, data, ModelConfig(), replace(recipe, epochs=k), seed)
                stopped[k].append(max(accuracies[:k]))
                cut[k].append(short.val_acc)
                print(f"  {'-'.join(map(str, widths))} seed {seed} k={k}: stopped {stopped[k][-1]:.4f}, "
                      f"cut {short.val_acc:.4f}", flush=True)

    print(f"{'k':>3} {'stopped mean':>12} {'min':>6} {'max':>6} {'cut mean':>9} {'min':>6} {'max':>6} "
          f"{'cut better':>10}")
    for k in cuts:
        better = sum(c > s for s, c in zip(stopped[k], cut[k], strict=True))
        print(f"{k:>3} {statistics.mean(stopped[k]):12.4f} {min(stopped[k]):6.4f} {max(stopped[k]):6.4f} "
              f"{statistics.mean(cut[k]):9.4f} {min(cut[k]):6.4f} {max(cut[k]):6.4f} {better:>6} of {len(cut[k])}")


if __name__ == "__main__":
    main()
