"""Ray backend: trials per minute with 1 and with N concurrent trials on the same search, and
the second phase (the top-3 full trainings as Ray tasks) on 1 and on N workers.

Both searches run the same space, seed and trial count on one local Ray (each trial gets
``--cpus-per-trial`` CPUs and as many torch threads); the second allows N trials at once.
Efficiency = (trials/min with N) / (N x trials/min with 1): 1.0 is perfect scaling. The
runs alternate (1, N, 1, N, ...) so machine drift hits both alike; medians are printed.
The second phase trains the same 3 profiles in full (the default recipe) as Ray tasks on a
local Ray with 1 CPU and then with N (one task per CPU): its wall time, side by side.

    python -m benchmarks.ray_concurrency [--trials 8] [--concurrent 2] [--repeats 2]
        [--device cuda --gpus-per-trial 0.5] [--skip-full]
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


FULL_PROFILES = ((16, 32, 32, 64, 64), (32, 32, 32, 32, 32), (16, 16, 32, 32, 64))


def full_phase_seconds(workers: int, device: str) -> tuple[float, list[float]]:
    """Wall time of the second phase on a local Ray of ``workers`` CPUs (1 CPU per task), and
    each candidate's own seconds."""
    import ray

    from search.backends.ray_tune import run_full_phase_on_ray
    from search.results import TrialSummary
    from search.session import load_data, open_store

    config = Config(
        space=SpaceConfig(layers=5),
        data=DataConfig(dataset="digits"),
        search=SearchConfig(budget_s=3600, backend="ray", top_k=len(FULL_PROFILES), device=device),
        ray=RayConfig(cpus_per_trial=1),
        store=StoreConfig(path=Path(tempfile.mkdtemp(prefix="bench-ray-full-"))),
    ).validate()
    data = load_data(config)
    tracker = open_store(config.store)
    parent = tracker.start_run("bench-full-phase")
    ranked = [TrialSummary(n, "COMPLETE", w, 2, 1.0 - n / 10, 0, 0, 1.0, None) for n, w in enumerate(FULL_PROFILES)]
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        start = time.monotonic()
        full = run_full_phase_on_ray(config, Budget(3600, start), data, tracker, parent, "bench", ranked,
                                     lambda event: None)
        elapsed = time.monotonic() - start
    finally:
        ray.shutdown()
    assert all(f.state == "COMPLETE" for f in full), [(f.state, f.note) for f in full]
    return elapsed, [f.seconds for f in full]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help="e.g. 0.5 with --device cuda")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-full", action="store_true", help="only the proxy phase")
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

    if args.skip_full:
        return
    print(f"\nsecond phase: {len(FULL_PROFILES)} full trainings (default recipe) as Ray tasks, 1 CPU each")
    walls: dict[int, list[float]] = {1: [], args.concurrent: []}
    each: dict[int, list[float]] = {1: [], args.concurrent: []}
    for _ in range(args.repeats):
        for workers in walls:
            wall, seconds = full_phase_seconds(workers, args.device)
            walls[workers].append(wall)
            each[workers] += seconds
    print(f"{'workers':>7} {'wall s':>7} {'per candidate s':>16}")
    for workers in walls:
        print(f"{workers:>7} {statistics.median(walls[workers]):7.1f} {statistics.median(each[workers]):16.1f}")
    one_wall, many_wall = statistics.median(walls[1]), statistics.median(walls[args.concurrent])
    print(f"wall time 1 / {args.concurrent} workers: {one_wall / many_wall:.2f}x")


if __name__ == "__main__":
    main()
