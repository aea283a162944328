"""Choose the proxy's defaults with ``search validate``: rank correlation and cost for a grid
of (frozen layers k, proxy epochs, learning rate), beside the zero-cost baselines, on the same
sampled candidates and the same full trainings (taken from the store's cache after the first
``search validate`` with the same data, recipe and seed).

    python -m benchmarks.fidelity_grid [--store runs] [--candidates 24] [--frozen 2,3,4] [--epochs 1,2,4]
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from pathlib import Path

import torch

from search.config import Config, FidelityConfig, FullTrainConfig, SearchConfig, StoreConfig, parse_int_list
from search.validate import ScorerReport, run_validation

BASELINES = ("params", "synflow", "naswot", "grad_norm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("runs"))
    parser.add_argument("--candidates", type=int, default=24)
    parser.add_argument("--frozen", default="2,3,4")
    parser.add_argument("--epochs", default="1,2,4")
    parser.add_argument("--lr", default="0.002")
    args = parser.parse_args()

    base = Config(full=FullTrainConfig(mode="none"), search=SearchConfig(device="cpu"),
                  fidelity=FidelityConfig(candidates=args.candidates, scorers=BASELINES),
                  store=StoreConfig(path=args.store)).validate()
    print(f"digits, {args.candidates} candidates, full training from scratch 12 epochs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    baselines = run_validation(base)
    print(f"{baselines.retrained} of {len(baselines.candidates)} full trainings run now, the rest cached")
    print(f"{'scorer':<28} {'rho':>6} {'rho 95% CI':>15} {'tau':>6} {'regret':>7} {'s/cand':>7} {'cost/full':>9}")

    def line(label: str, r: ScorerReport) -> None:
        print(f"{label:<28} {r.spearman:6.3f} [{r.spearman_ci[0]:5.2f}, {r.spearman_ci[1]:5.2f}] "
              f"{r.kendall:6.3f} {r.regret:7.4f} {r.cost_s:7.3f} {r.cost_ratio:9.4f}")

    for report in baselines.reports:
        line(report.scorer, report)
    for frozen, epochs, lr in itertools.product(parse_int_list(args.frozen, "k"), parse_int_list(args.epochs, "epochs"),
                                                [float(v) for v in args.lr.split(",")]):
        config = replace(base, space=replace(base.space, frozen_layers=(frozen,)),
                         proxy=replace(base.proxy, epochs=epochs, lr=lr),
                         fidelity=replace(base.fidelity, scorers=("proxy",)))
        (report,) = run_validation(config.validate()).reports
        line(f"proxy k={frozen} epochs={epochs} lr={lr:g}", report)


if __name__ == "__main__":
    main()
