"""Slimming a trained network against training its learned widths from scratch.

For each profile and seed: full training with the default recipe (``FullTrainConfig()``: from
scratch since 2026-11-27, progressive widening before; cosine decay), the kernel analysis
(learned widths), then
- slim: the lazy kernels removed (``models.slim``), measured before any fine-tuning, then after
  ``--final-epochs`` of fine-tuning at the recipe's final rate (~0 under its cosine decay) and,
  separately, after ``search slim``'s default fine-tuning (4 epochs at half the peak rate);
- scratch: the learned widths trained from scratch with the same recipe's epochs (cosine).
Prints validation accuracy of each, parameters and multiply-adds of searched vs slimmed.

    python -m benchmarks.slim_vs_scratch [--datasets digits,textures] [--seeds 2]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import torch

from models import format_widths
from search.analysis import analyse
from search.config import DataConfig, FullTrainConfig, ModelConfig, parse_int_list
from search.data import load
from search.progressive import train_full
from search.slim import final_rate, fine_tune_rate, slim_model

PROFILES = ("16-32-32-64-64", "64-64-32-32-16", "8-32-64-16-64")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="digits,textures")
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--final-epochs", type=int, default=2)
    args = parser.parse_args()
    recipe = FullTrainConfig()
    rate, tune_rate = final_rate(recipe), fine_tune_rate(recipe)
    total = recipe.total_epochs
    print(f"recipe: {recipe.describe()}; fine-tune: final "
          f"{args.final_epochs} epochs at {rate:.3g} (the recipe's final rate) | tuned {recipe.fine_tune_epochs} "
          f"epochs at {tune_rate:g} (search slim's default); "
          f"scratch: learned widths, {total} epochs; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'dataset':<9} {'widths':<16} {'seed':>4} {'full':>6} {'learned':<16} {'params':>7} {'MACs':>6} "
          f"{'removed':>7} {'final':>6} {'tuned':>6} {'scratch':>7}")
    gaps: dict[str, list[float]] = {"final": [], "tuned": [], "scratch": []}
    for dataset in args.datasets.split(","):
        data = load(DataConfig(dataset=dataset))
        for label in args.profiles.split(","):
            widths = parse_int_list(label.replace("-", ","), "width")
            for seed in range(args.seeds):
                result, model = train_full(widths, data, ModelConfig(), recipe, seed=seed)
                analysis = analyse(model, data, recipe.analysis_images, recipe.lazy_threshold)
                assert analysis is not None
                stats = list(analysis.stats)
                _, final = slim_model(model, data, stats, args.final_epochs, rate, recipe.batch_size, seed)
                _, tuned = slim_model(model, data, stats, recipe.fine_tune_epochs, tune_rate, recipe.batch_size, seed)
                learned = tuned.slim_widths
                scratch_recipe = replace(recipe, mode="none")
                scratch, _ = train_full(learned, data, ModelConfig(), scratch_recipe, seed=seed)
                gaps["final"].append(final.tuned_acc - result.val_acc)
                gaps["tuned"].append(tuned.tuned_acc - result.val_acc)
                gaps["scratch"].append(scratch.val_acc - result.val_acc)
                print(f"{dataset:<9} {label:<16} {seed:>4} {result.val_acc:6.4f} {format_widths(learned):<16} "
                      f"{tuned.slim_params / tuned.params:7.2f} {tuned.slim_macs / tuned.macs:6.2f} "
                      f"{tuned.removed_acc:7.4f} {final.tuned_acc:6.4f} {tuned.tuned_acc:6.4f} {scratch.val_acc:7.4f}",
                      flush=True)
    print("params, MACs: slimmed / searched. Mean change of accuracy against the full training: " + ", ".join(
        f"{name} {statistics.mean(values):+.4f}" for name, values in gaps.items()))


if __name__ == "__main__":
    main()
