"""Choose the proxy's defaults with ``search validate``: rank correlation (against the mean of
the full-training seeds, beside the seed ceiling) and cost for a grid of proxy settings,
beside the zero-cost baselines, on the same sampled candidates and the same full trainings
(taken from the store's cache after a first ``search validate`` with the same data, space,
recipe and seed).

    python -m benchmarks.fidelity_grid --dataset textures --width-choices 4,8,16,32,64 \\
        [--store runs] [--candidates 24] [--full-seeds 2] [--frozen 1,2] [--epochs 2,4] [--train-images 0,512]
        [--warmup 0.5] [--batch-size 32,128] [--lr 0.002] [--replicas 1,3]
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from pathlib import Path

import torch

from search.config import (
    Config,
    DataConfig,
    FidelityConfig,
    FullTrainConfig,
    SearchConfig,
    SpaceConfig,
    StoreConfig,
    parse_int_list,
)
from search.validate import ScorerReport, run_validation

BASELINES = ("params", "synflow", "naswot", "grad_norm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("runs"))
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--width-choices", default="4,8,16,32,64")
    parser.add_argument("--candidates", type=int, default=24)
    parser.add_argument("--full-seeds", type=int, default=2)
    parser.add_argument("--frozen", default="2")
    parser.add_argument("--epochs", default="4")
    parser.add_argument("--train-images", default="0", help="0: all")
    parser.add_argument("--warmup", default="0.5")
    parser.add_argument("--batch-size", default="128")
    parser.add_argument("--lr", default="0.002")
    parser.add_argument("--replicas", default="1")
    args = parser.parse_args()

    choices = parse_int_list(args.width_choices, "width")
    space = SpaceConfig(layer_choices=(choices,) * SpaceConfig().layers)
    base = Config(space=space, full=FullTrainConfig(mode="none"), data=DataConfig(dataset=args.dataset),
                  search=SearchConfig(device="cpu"),
                  fidelity=FidelityConfig(candidates=args.candidates, scorers=BASELINES, full_seeds=args.full_seeds),
                  store=StoreConfig(path=args.store)).validate()
    print(f"{args.dataset}, {args.candidates} candidates from {args.width_choices} per layer, full training "
          f"{base.full.describe()}, mean of "
          f"{args.full_seeds} seeds; torch {torch.__version__}, {torch.get_num_threads()} threads")
    baselines = run_validation(base)
    cached, trainings = baselines.trainings
    print(f"{trainings - cached} of {trainings} full trainings done now, the rest cached; "
          f"seed ceiling (rho between seeds) {baselines.ceiling:.3f}; /ceil divides by {baselines.replica_rho:.3f}, "
          "what one more full training reaches against the target")
    print(f"{'scorer':<40} {'rho':>6} {'rho 95% CI':>15} {'/ceil':>6} {'beyond':>6} {'tau':>6} {'regret':>7} "
          f"{'s/cand':>7} {'cost/full':>9}")

    def line(label: str, r: ScorerReport) -> None:
        print(f"{label:<40} {r.spearman:6.3f} [{r.spearman_ci[0]:5.2f}, {r.spearman_ci[1]:5.2f}] "
              f"{r.of_ceiling:6.2f} {r.beyond_width:6.2f} {r.kendall:6.3f} {r.regret:7.4f} {r.cost_s:7.3f} "
              f"{r.cost_ratio:9.4f}", flush=True)

    for report in baselines.reports:
        line(report.scorer, report)
    for frozen, epochs, images, warmup, batch_size, lr, replicas in itertools.product(
            parse_int_list(args.frozen, "k"), parse_int_list(args.epochs, "epochs"),
            [int(v) for v in args.train_images.split(",")], [float(v) for v in args.warmup.split(",")],
            parse_int_list(args.batch_size, "batch size"), [float(v) for v in args.lr.split(",")],
            parse_int_list(args.replicas, "replicas")):
        config = replace(base, space=replace(base.space, frozen_layers=(frozen,)),
                         proxy=replace(base.proxy, epochs=epochs, train_images=images or None, warmup_epochs=warmup,
                                       batch_size=batch_size, lr=lr, replicas=replicas),
                         fidelity=replace(base.fidelity, scorers=("proxy",)))
        (report,) = run_validation(config.validate()).reports
        line(f"proxy k={frozen} e={epochs} r={replicas} img={images or 'all'} b={batch_size} lr={lr:g} wu={warmup:g}",
             report)


if __name__ == "__main__":
    main()
