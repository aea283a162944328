"""Ray backend: trials per minute with 1 and with N concurrent trials on the same search.

Both searches run the same space, seed and trial count on one local Ray (each trial gets
``--cpus-per-trial`` CPUs and as many torch threads); the second allows N trials at once.
Efficiency = (trials/min with N) / (N x trials/min with 1): 1.0 is perfect scaling. The
runs alternate (1, N, 1, N, ...) so machine drift hits both alike; medians are printed.

    python -m benchmarks.ray_concurrency [--trials 8] [--concurrent 2] [--repeats 2]
        [--device cuda --gpus-per-trial 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch

from search.budget import Budget
from search.config import (
    Config,
    DataConfig,
    ModelConfig,
    ProxyConfig,
    RayConfig,
    SearchConfig,
    SpaceConfig,
    StoreConfig,
)
from search.study import run_search


def trials_per_minute(concurrent: int, trials: int, cpus: float, gpus: float, device: str) -> float:
    config = Config(
        space=SpaceConfig(layers=5, width_choices=None, width_min=16, width_max=64, width_step=16, frozen_layers=(2,)),
        model=ModelConfig(),
        proxy=ProxyConfig(epochs=3),
        data=DataConfig(dataset="digits"),
        search=SearchConfig(budget_s=3600, trials=trials, pruner="none", backend="ray", top_k=0, device=device),
        ray=RayConfig(cpus_per_trial=cpus, gpus_per_trial=gpus, max_concurrent=concurrent),
        store=StoreConfig(path=Path(tempfile.mkdtemp(prefix="bench-ray-"))),
    ).validate()
    start = time.monotonic()
    result = run_search(config, Budget(config.search.budget_s, start))
    assert result.count("COMPLETE") == trials, [t.state for t in result.trials]
    # The whole search, starting the local Ray included (the same few seconds for both settings).
    return trials / (result.elapsed_s / 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help="e.g. 0.5 with --device cuda")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"digits, {args.trials} trials of 3 proxy epochs, {args.cpus_per_trial:g} CPU per trial, "
          f"{args.gpus_per_trial:g} GPU per trial on {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads on this machine")
    rates: dict[int, list[float]] = {1: [], args.concurrent: []}
    for _ in range(args.repeats):
        for concurrent in rates:
            rates[concurrent].append(trials_per_minute(concurrent, args.trials, args.cpus_per_trial,
                                                         args.gpus_per_trial, args.device))
    one, many = statistics.median(rates[1]), statistics.median(rates[args.concurrent])
    print(f"{'concurrent':>10} {'trials/min':>11}")
    print(f"{1:>10} {one:11.2f}")
    print(f"{args.concurrent:>10} {many:11.2f}")
    print(f"speed-up {many / one:.2f}x, efficiency {many / (args.concurrent * one):.2f}")


if __name__ == "__main__":
    main()
