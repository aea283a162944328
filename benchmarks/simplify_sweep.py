"""Kernel simplification swept over thresholds, against two controls.

For each dataset, profile and seed: full training with the default recipe, then for each
threshold S the kernels whose best symmetry score is >= S snapped to their symmetric form,
frozen, and the rest fine-tuned (``search simplify``'s defaults: 4 epochs at half the peak
rate). Two controls say what the numbers mean:
- *tune only*: nothing snapped, the whole network fine-tuned the same (fine-tuning alone can
  move accuracy);
- *random*: as many kernels per layer as S snapped, but chosen at random (each onto its own
  best symmetry): does choosing the most symmetric kernels matter?
Prints one row per threshold and a summary of the mean change against *tune only*.

    python -m benchmarks.simplify_sweep [--datasets digits,textures] [--seeds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch

from models.symmetry import LayerPlan, plan
from search.config import SIMPLIFY_SWEEP, DataConfig, FullTrainConfig, ModelConfig, parse_int_list
from search.data import load
from search.progressive import train_full
from search.simplify import snap_and_tune
from search.slim import fine_tune_rate

PROFILES = ("16-32-32-64-64", "64-64-32-32-16")


def at_random(plans: list[LayerPlan], generator: torch.Generator) -> list[LayerPlan]:
    """The same number of snapped kernels per layer as ``plans``, chosen uniformly at random."""
    chosen = []
    for p in plans:
        picked = set(torch.randperm(len(p.chosen), generator=generator)[: p.simplified].tolist())
        chosen.append(dataclasses.replace(p, chosen=tuple(k in picked for k in range(len(p.chosen)))))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="digits,textures")
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--thresholds", default=",".join(f"{s:g}" for s in SIMPLIFY_SWEEP))
    args = parser.parse_args()
    recipe = FullTrainConfig()
    rate, epochs = fine_tune_rate(recipe), recipe.fine_tune_epochs
    thresholds = [float(s) for s in args.thresholds.split(",")]
    print(f"recipe: {recipe.describe()}; fine-tune {epochs} "
          f"epochs at {rate:g}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'dataset':<9} {'widths':<15} {'seed':>4} {'S':>5} {'snapped':>7} {'removed':>8} {'trained':>7} "
          f"{'snap':>6} {'tuned':>6} {'random':>6} {'tune only':>9}")
    gaps: dict[float, dict[str, list[float]]] = {s: {"tuned": [], "random": [], "removed": []} for s in thresholds}
    for dataset in args.datasets.split(","):
        data = load(DataConfig(dataset=dataset))
        for label in args.profiles.split(","):
            widths = parse_int_list(label.replace("-", ","), "width")
            for seed in range(args.seeds):
                _, model = train_full(widths, data, ModelConfig(), recipe, seed=seed)
                nothing = plan(model, torch.inf)
                _, control = snap_and_tune(model, data, nothing, None, epochs, rate, recipe.batch_size, seed)
                generator = torch.Generator().manual_seed(seed)
                for threshold in thresholds:
                    plans = plan(model, threshold)
                    _, report = snap_and_tune(model, data, plans, threshold, epochs, rate, recipe.batch_size, seed,
                                              control.val_acc)
                    _, random = snap_and_tune(model, data, at_random(plans, generator), threshold, epochs, rate,
                                              recipe.batch_size, seed, control.val_acc)
                    gaps[threshold]["tuned"].append(report.tuned_acc - control.tuned_acc)
                    gaps[threshold]["random"].append(random.tuned_acc - control.tuned_acc)
                    gaps[threshold]["removed"].append(report.removed_share)
                    print(f"{dataset:<9} {label:<15} {seed:>4} {threshold:5g} {report.simplified:7d} "
                          f"{100 * report.removed_share:7.2f}% {report.val_acc:7.4f} {report.projected_acc:6.4f} "
                          f"{report.tuned_acc:6.4f} {random.tuned_acc:6.4f} {control.tuned_acc:9.4f}", flush=True)
    print("mean over datasets, profiles and seeds: S, kernel weights removed, accuracy change against tune only "
          "(snapped by score | as many at random)")
    for threshold, values in gaps.items():
        print(f"  S={threshold:<5g} removed {100 * statistics.mean(values['removed']):5.2f}%  "
              f"by score {statistics.mean(values['tuned']):+.4f}  at random {statistics.mean(values['random']):+.4f}")


if __name__ == "__main__":
    main()
