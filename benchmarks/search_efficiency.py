"""Does the search pay for itself? Four ways to spend the same wall-clock budget on the same
space, side by side in one run, each winner then trained with the same full recipe:

    (a) search      the defaults: TPE, Hyperband, 2 frozen random layers, cached features
    (a/2)           the same with half the budget
    (a0)            the same with both width weights 0: the proxy's accuracy alone, no width penalty
    (b) plain       TPE + Hyperband with nothing frozen (--frozen 0): every trial trains all layers
    (c) random      uniform random sampling, scored by the proxy
    (d) synflow     TPE over the zero-cost synflow score (no training at all)

Each method runs with ``--seeds`` search seeds; the winner of each (the top trial by its own
score) is trained in full with the recipe of ``search train`` (from scratch, cosine decay)
``--full-seeds`` times (seeds: the search's seed, +1, ...; one training of a profile moves by
1-2 points with the seed on textures, as much as the methods differ), and its accuracy is the
mean. The table shows the winners' full validation accuracy (mean and range over the search
seeds), their trained parameters, the trials finished, the seconds into the search at which
the winner was found, and how many winners came within 0.5 points of the best winner of any
method. Full trainings are cached in the store (the same profile and seed trains once).

    python -m benchmarks.search_efficiency [--datasets digits,textures] [--budget 60] [--seeds 3] [--first-seed 0]
                                           [--full-seeds 3] [--methods a,a0] [--max-params N]

``--max-params N`` holds every method to profiles of at most N parameters (a search under a cost
limit, where the widest profile is not allowed and the ranking among narrower ones decides).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import torch

from models import format_widths
from search import data as datasets
from search.budget import Budget
from search.config import Config, DataConfig, SearchConfig, StoreConfig
from search.progressive import train_full
from search.study import run_search
from search.validate import FullTrainingCache, recipe_key

WITHIN = 0.005  # "as good as the best": within half a point of validation accuracy


@dataclass(frozen=True)
class Method:
    label: str
    budget_share: float
    frozen: int | None = None  # None: the default
    sampler: str = "tpe"
    scorer: str = "proxy"
    width_weights: tuple[float, float] | None = None  # (trained, every frozen layer's); None: the defaults

    @property
    def key(self) -> str:
        """What --methods names: ``a``, ``a/2``, ``a0``, ``b``, ``c``, ``d``."""
        return self.label[1 : self.label.index(")")]


METHODS = (
    Method("(a) search, defaults", 1.0),
    Method("(a/2) search, half budget", 0.5),
    Method("(a0) search, width weights 0", 1.0, width_weights=(0.0, 0.0)),
    Method("(b) plain TPE+Hyperband, frozen 0", 1.0, frozen=0),
    Method("(c) random sampling + proxy", 1.0, sampler="random"),
    Method("(d) TPE + synflow", 1.0, scorer="synflow"),
)


@dataclass(frozen=True)
class Outcome:
    widths: tuple[int, ...]
    trials: int
    found_s: float  # seconds from the search's start to the end of its winner's trial
    full_acc: float
    trained_params: int


def configure(method: Method, dataset: str, budget_s: float, seed: int, store: Path,
              max_params: int | None = None) -> Config:
    base = Config()
    space = base.space if method.frozen is None else replace(base.space, frozen_layers=(method.frozen,))
    proxy = base.proxy if method.width_weights is None else replace(
        base.proxy, width_weight=method.width_weights[0], frozen_width_weight=method.width_weights[1],
        last_frozen_width_weight=method.width_weights[1])
    return Config(
        space=space,
        proxy=proxy,
        data=DataConfig(dataset=dataset),
        search=replace(SearchConfig(), budget_s=budget_s * method.budget_share, seed=seed, device="cpu", top_k=0,
                       sampler=method.sampler, scorer=method.scorer, max_params=max_params),
        store=StoreConfig(path=store),
    ).validate()


def winner_of(config: Config, study_name: str) -> tuple[tuple[int, ...], int, float]:
    """The top trial's widths, the trials finished and when (seconds into the search) the top trial ended."""
    study = optuna.load_study(study_name=study_name, storage=config.store.optuna_url)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(done, key=lambda t: (t.value, -t.user_attrs.get("trained_params", 0), -t.number))
    started = min(t.datetime_start for t in trials if t.datetime_start is not None)
    widths = tuple(int(w) for w in best.user_attrs["widths"].split("-"))
    finished = sum(t.state.is_finished() for t in trials)
    return widths, finished, (best.datetime_complete - started).total_seconds()


def full_accuracy(config: Config, widths: tuple[int, ...], data: datasets.TensorData,
                  cache: FullTrainingCache, seeds: int) -> tuple[float, int]:
    """The mean full validation accuracy of ``widths`` over ``seeds`` trainings, and its trained parameters."""
    accuracies, params = [], 0
    for seed in range(config.search.seed, config.search.seed + seeds):
        key = recipe_key(config, widths, seed)
        entry = cache.get(key)
        if entry is None or "trained_params" not in entry:
            result, _ = train_full(widths, data, config.model, config.full, seed)
            entry = {"widths": format_widths(widths), "seed": seed, "val_acc": result.val_acc,
                     "seconds": result.seconds, "trained_params": result.kept_trained_params}
            cache.put(key, entry)
        accuracies.append(float(entry["val_acc"]))
        params = int(entry["trained_params"])
    return statistics.mean(accuracies), params


def run_dataset(dataset: str, budget_s: float, seeds: range, store: Path, methods: tuple[Method, ...],
                max_params: int | None = None, full_seeds: int = 1) -> None:
    cache = FullTrainingCache(store / "full_cache.json")
    outcomes: dict[str, list[Outcome]] = {m.label: [] for m in methods}
    for seed in seeds:
        data = datasets.load(DataConfig(dataset=dataset), seed=seed)  # what each search of this seed trains on
        for method in methods:  # methods in turns, so drift of the machine hits all alike
            config = configure(method, dataset, budget_s, seed, store / dataset, max_params)
            result = run_search(config, Budget(config.search.budget_s, time.monotonic()))
            widths, trials, found_s = winner_of(config, result.study_name)
            acc, params = full_accuracy(config, widths, data, cache, full_seeds)
            outcomes[method.label].append(Outcome(widths, trials, found_s, acc, params))
            print(f"  {dataset} seed {seed} {method.label:<36} {result.elapsed_s:5.1f} s  {trials:3d} trials  "
                  f"winner {format_widths(widths):<16} full {acc:.4f}", flush=True)
    best = max(o.full_acc for runs in outcomes.values() for o in runs)
    limit = "" if max_params is None else f", at most {max_params:,} parameters"
    print(f"\n{dataset}: budget {budget_s:g} s per search{limit}, seeds {seeds.start}-{seeds.stop - 1}; full recipe "
          f"{Config().full.describe()}, mean of {full_seeds} training seed(s) per winner; best winner of any "
          f"method {best:.4f}")
    print(f"{'method':<36} {'full val_acc mean [min, max]':>29} {'params':>9} {'trials':>7} {'found at s':>10} "
          f"{'within 0.5':>10}")
    for label, runs in outcomes.items():
        accs = [o.full_acc for o in runs]
        near = sum(best - a <= WITHIN for a in accs)
        print(f"{label:<36} {statistics.mean(accs):10.4f} [{min(accs):.4f}, {max(accs):.4f}]  "
              f"{statistics.median(o.trained_params for o in runs):9,.0f} "
              f"{statistics.mean(o.trials for o in runs):7.1f} {statistics.median(o.found_s for o in runs):10.1f} "
              f"{near:>6}/{len(runs)}")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="digits,textures")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per search (default 60)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds FIRST..FIRST+SEEDS-1 (default 0)")
    parser.add_argument("--store", type=Path, default=Path("runs/bench_efficiency"))
    parser.add_argument("--methods", default=",".join(m.key for m in METHODS),
                        help="which methods, by the letters in their labels (default: all)")
    parser.add_argument("--max-params", type=int, help="every method's profiles at most this many parameters")
    parser.add_argument("--full-seeds", type=int, default=3, help="full trainings per winner, averaged (default 3)")
    args = parser.parse_args()
    wanted = [key.strip() for key in args.methods.split(",") if key.strip()]
    unknown = [key for key in wanted if key not in {m.key for m in METHODS}]
    if unknown or not wanted:
        parser.error(f"unknown method {', '.join(unknown) or repr(args.methods)}; "
                     f"choose among {', '.join(m.key for m in METHODS)}")
    if args.full_seeds < 1:
        parser.error(f"--full-seeds {args.full_seeds} must be at least 1")
    methods = tuple(m for m in METHODS if m.key in wanted)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    for dataset in args.datasets.split(","):
        run_dataset(dataset.strip(), args.budget, range(args.first_seed, args.first_seed + args.seeds), args.store,
                    methods, args.max_params, args.full_seeds)


if __name__ == "__main__":
    main()
