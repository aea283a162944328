"""Score rules recomputed over stored validate samples, without training anything.

A ``search validate`` sample costs minutes to an hour of full training, and the full-training
cache lives in a store that a fresh machine does not have. Its ``candidates.csv`` (every
candidate's widths, each full-training seed's accuracy, each proxy seed's accuracy and every
free score) is a few kilobytes: kept under ``benchmarks/ground_truths/<name>/`` with the
command that made it, it lets any rule that maps (proxy accuracy, widths) to a score be
measured against every ground truth gathered so far, in a second.

    # keep the sample that the latest validate in STORE produced (after it ends):
    python -m benchmarks.rescore add textures-s23 --store runs/gt -- --dataset textures --seed 23 ...
    # the search's score with per-layer width weights, against today's, on every stored sample:
    python -m benchmarks.rescore --weights 0.008,0.020,0.020,0.020,0.020
    # one layer's weight swept (exploration: it sees the samples it is judged on):
    python -m benchmarks.rescore --sweep-layer 2 --sweep 0,0.008,0.014,0.020,0.030,0.040
    # put a sample's full trainings back into STORE's full-training cache, so that validate with
    # the sample's arguments (and any proxy setting) trains proxies only, against its target:
    python -m benchmarks.rescore restore textures-s23 --store runs/gt

A rule chosen by looking at these samples is tuned to them: judge it on samples added after
it was written down (``PREREGISTERED.md``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from search.config import Config, ProxyConfig
from search.space import halvings_penalty, layer_weights, widest
from search.validate import rank_agreement

FOLDER = Path(__file__).parent / "ground_truths"


@dataclass(frozen=True)
class Sample:
    """One stored validate sample: its candidates and what the score needs to know of its space."""

    name: str
    widths: tuple[tuple[int, ...], ...]
    target: tuple[float, ...]  # the mean full accuracy over the seeds
    proxy: tuple[tuple[float, ...], ...]  # per proxy seed, each candidate's accuracy
    widest: tuple[int, ...]  # per layer, the widest width the space allows
    frozen: int
    meta: dict
    folder: Path | None = None

    @classmethod
    def load(cls, folder: Path) -> Sample:
        meta = json.loads((folder / "meta.json").read_text())
        with (folder / "candidates.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        seeds = sorted(int(k.removeprefix("score_proxy_seed")) for k in rows[0] if k.startswith("score_proxy_seed"))
        columns = [f"score_proxy_seed{s}" for s in seeds] or ["score_proxy"]  # one proxy seed: the proxy row
        proxy = tuple(tuple(float(r[column]) for r in rows) for column in columns)
        return cls(folder.name, tuple(tuple(int(w) for w in r["widths"].split("-")) for r in rows),
                   tuple(float(r["full_val_acc"]) for r in rows), proxy, tuple(meta["widest"]),
                   int(meta["frozen"]), meta, folder)


def unlike_logged(rows: Sequence[dict[str, str]], widest: Sequence[int], weights: Sequence[float]) -> str | None:
    """The first candidate of a ``candidates.csv`` whose logged penalty (``score_proxy`` less
    ``score_proxy_score``) is not ``weights`` per halving below ``widest``; None when all match."""
    for row in rows:
        logged = float(row["score_proxy"]) - float(row["score_proxy_score"])
        if not math.isclose(halvings_penalty([int(w) for w in row["widths"].split("-")], widest, weights), logged,
                            abs_tol=1e-9):
            return row["widths"]
    return None


def default_weights(sample: Sample) -> tuple[float, ...]:
    """The search's weights today, per layer (``search.space.layer_weights`` of the default proxy)."""
    return layer_weights(len(sample.widest), ProxyConfig(), sample.frozen)


def logged_weights(sample: Sample) -> tuple[float, ...]:
    """The weights of the sample's own ``score_proxy_score`` column (a sample kept before
    ``last_frozen_width_weight`` existed took ``frozen_width_weight`` off its last frozen layer too)."""
    meta = sample.meta
    proxy = ProxyConfig(width_weight=meta["width_weight"], frozen_width_weight=meta["frozen_width_weight"],
                        last_frozen_width_weight=meta.get("last_frozen_width_weight", meta["frozen_width_weight"]))
    return layer_weights(len(sample.widest), proxy, sample.frozen)


@dataclass(frozen=True)
class Rescored:
    rhos: tuple[float, ...]  # per proxy seed
    regrets: tuple[float, ...]

    @property
    def rho(self) -> float:
        return statistics.fmean(self.rhos)

    @property
    def regret(self) -> float:
        return statistics.fmean(self.regrets)


def rescore(sample: Sample, weights: Sequence[float]) -> Rescored:
    """The score's rho against the sample's target and its top-1 regret, per proxy seed."""
    penalties = [halvings_penalty(w, sample.widest, weights) for w in sample.widths]
    rhos, regrets = zip(*(rank_agreement([a - p for a, p in zip(accs, penalties, strict=True)], sample.target)
                          for accs in sample.proxy), strict=True)
    return Rescored(rhos, regrets)


def load_all(folder: Path = FOLDER) -> list[Sample]:
    if not folder.is_dir():
        return []
    return [Sample.load(d) for d in sorted(folder.iterdir()) if (d / "candidates.csv").is_file()]


def parse_weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"rescore: --weights wants numbers separated by commas, got {text!r}") from None


def compare(samples: Sequence[Sample], rules: dict[str, Sequence[float] | None]) -> None:
    """A row per sample, the score's rho (mean over proxy seeds; per seed in brackets) and regret per rule."""
    names = list(rules)
    print(f"{'sample':<28}" + "".join(f"{n:>30}" for n in names))
    totals: dict[str, list[Rescored]] = {n: [] for n in names}
    for sample in samples:
        cells = []
        for name in names:
            weights = rules[name] or default_weights(sample)
            if len(weights) != len(sample.widest):
                raise SystemExit(f"rescore: {len(weights)} weights for {sample.name}'s {len(sample.widest)} layers")
            r = rescore(sample, weights)
            totals[name].append(r)
            seeds = "/".join(f"{v:.3f}" for v in r.rhos)
            cells.append(f"{r.rho:.3f} ({seeds}) {r.regret:.4f}")
        print(f"{sample.name:<28}" + "".join(f"{c:>30}" for c in cells))
    print(f"{'mean rho, mean regret':<28}" + "".join(
        f"{statistics.fmean(r.rho for r in totals[n]):>23.3f} {statistics.fmean(r.regret for r in totals[n]):.4f}"
        for n in names))
    if len(names) == 2:
        a, b = totals[names[0]], totals[names[1]]
        better = sum(y.rho > x.rho for x, y in zip(a, b, strict=True))
        print(f"{names[1]} ranks better than {names[0]} on {better} of {len(a)} samples")


def sweep(samples: Sequence[Sample], layer: int, values: Sequence[float]) -> None:
    """The score's rho (mean over proxy seeds) per sample as layer ``layer``'s (1-based) weight takes
    each of ``values``, the other layers' weights today's."""
    table = []
    for sample in samples:
        base = default_weights(sample)
        row = [rescore(sample, [*base[:layer - 1], w, *base[layer:]]).rho for w in values]
        table.append(row)
        print(f"{sample.name:<28}" + " ".join(f"{v:>6.3f}" for v in row))
    print(f"{'L' + str(layer) + ' weight':<28}" + " ".join(f"{w:>6.3f}" for w in values))
    print(f"{'mean rho':<28}" + " ".join(f"{v:>6.3f}" for v in map(statistics.fmean, zip(*table, strict=True))))


def validate_config(validate_args: Sequence[str]) -> Config:
    """The settings ``search validate VALIDATE_ARGS`` runs with (the search's own parser and defaults)."""
    from search.cli import build_parser, config_from_args

    return config_from_args(build_parser().parse_args(["validate", *validate_args]))


def recipe_fingerprint(config: Config) -> str:
    """What decides the sample's full trainings but the widths and the seed (data, model, recipe):
    ``search.validate.recipe_key`` of no widths with seed 0."""
    from search.validate import recipe_key

    return recipe_key(config, (), seed=0)


def add(name: str, store: Path, validate_args: list[str], folder: Path = FOLDER) -> Path:
    """Keep the newest ``candidates.csv`` under ``store`` as sample ``name``, with the command and the
    space its score needs (parsed with the search's own parser, so the defaults are the search's)."""
    found = sorted(store.rglob("candidates.csv"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"rescore: no candidates.csv under {str(store)!r}; run search validate --store there first")
    config = validate_config(validate_args)
    frozen = config.space.frozen_layers
    if len(frozen) != 1:
        raise SystemExit(f"rescore: validate fixes one frozen depth; got {frozen}")
    with found[-1].open() as handle:
        rows = list(csv.DictReader(handle))
    weights = layer_weights(config.space.layers, config.proxy, frozen[0])
    unlike = unlike_logged(rows, widest(config.space), weights)  # the newest run must be the one these describe
    if unlike is not None:
        raise SystemExit(f"rescore: {str(found[-1])!r} was not scored with the weights {weights} of these "
                         f"arguments (candidate {unlike}); pass the validate arguments it ran with")
    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(found[-1], target / "candidates.csv")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    meta = {"command": "search validate " + " ".join(validate_args), "commit": commit,
            "recipe": recipe_fingerprint(config),
            "dataset": config.data.dataset, "sample": config.fidelity.sample, "seed": config.search.seed,
            "full_seeds": config.fidelity.full_seeds, "widest": list(widest(config.space)), "frozen": frozen[0],
            # the weights of the candidates.csv's score_proxy_score column (tests/test_rescore.py)
            "width_weight": config.proxy.width_weight, "frozen_width_weight": config.proxy.frozen_width_weight,
            "last_frozen_width_weight": config.proxy.last_frozen_width_weight}
    (target / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return target


def restore(name: str, store: Path, folder: Path = FOLDER) -> tuple[list[str], int]:
    """Write sample ``name``'s full trainings (each seed's accuracy, the mean seconds) into the
    full-training cache under ``store``, keyed as validate with the sample's arguments keys them
    today. Returns those arguments (with ``--store``) and how many entries were written.

    A proxy setting then costs its proxies only: ``search validate ARGS --proxy-...`` finds every
    full training cached. The key holds the recipe its arguments give under today's defaults, so a
    sample whose recipe fingerprint (``meta.json``) differs from today's is refused: its accuracies
    are not what validate would train now. The entries carry no device, so cost/full says its full
    trainings' device is not known; their seconds are the sample's mean per candidate, not each seed's.
    """
    from search.validate import CACHE_FILE, FullTrainingCache, recipe_key, training_seeds

    sample_folder = folder / name
    if not (sample_folder / "meta.json").is_file():
        known = ", ".join(s.name for s in load_all(folder)) or "none"
        raise SystemExit(f"rescore: no stored sample {name!r} (stored: {known})")
    meta = json.loads((sample_folder / "meta.json").read_text())
    args = meta["command"].split()[2:]  # after "search validate"
    if "--store" in args:
        raise SystemExit(f"rescore: {name}'s command names its own --store; restore chooses the store")
    args += ["--store", str(store)]
    config = validate_config(args)
    if meta.get("recipe") != recipe_fingerprint(config):
        raise SystemExit(f"rescore: {name} was trained under another recipe than its command gives today "
                         f"(fingerprint {meta.get('recipe')}, today {recipe_fingerprint(config)}): validate "
                         "would train it again, not read it back")
    with (sample_folder / "candidates.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    seeds = training_seeds(config)
    columns = [f"full_val_acc_seed{i}" for i in range(len(seeds))] if len(seeds) > 1 else ["full_val_acc"]
    cache = FullTrainingCache(config.store.path / CACHE_FILE)
    for row in rows:
        widths = tuple(int(w) for w in row["widths"].split("-"))
        for seed, column in zip(seeds, columns, strict=True):
            cache.entries[recipe_key(config, widths, seed)] = {
                "widths": row["widths"], "seed": seed, "val_acc": float(row[column]),
                "seconds": float(row["full_time_s"]), "device": "", "workers": 1, "restored_from": name}
    cache.write()
    return args, len(rows) * len(seeds)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["restore"]:
        parser = argparse.ArgumentParser(prog="rescore restore")
        parser.add_argument("name")
        parser.add_argument("--store", type=Path, required=True)
        args = parser.parse_args(argv[1:])
        validate_args, count = restore(args.name, args.store)
        print(f"{count} full trainings of {args.name} restored; validate against them (proxies only) with:\n"
              f"  search validate {' '.join(validate_args)}")
        return 0
    if argv[:1] == ["add"]:
        if "--" not in argv:
            raise SystemExit("rescore add NAME --store DIR -- VALIDATE_ARGS...")
        cut = argv.index("--")
        parser = argparse.ArgumentParser(prog="rescore add")
        parser.add_argument("name")
        parser.add_argument("--store", type=Path, required=True)
        args = parser.parse_args(argv[1:cut])
        print(add(args.name, args.store, argv[cut + 1:]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rescore", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=parse_weights, help="one width weight per layer, against today's")
    parser.add_argument("--sweep-layer", type=int, metavar="L", help="vary layer L's weight (1-based), others today's")
    parser.add_argument("--sweep", type=parse_weights, default=(0, 0.004, 0.008, 0.014, 0.020, 0.030, 0.040))
    parser.add_argument("--only", metavar="TEXT", help="the samples whose name holds TEXT")
    args = parser.parse_args(argv)
    samples = [s for s in load_all() if args.only is None or args.only in s.name]
    if not samples:
        matching = f" matching {args.only!r}" if args.only else ""
        raise SystemExit(f"rescore: no stored samples under {FOLDER}{matching}")
    if args.sweep_layer is not None:
        sweep(samples, args.sweep_layer, args.sweep)
        return 0
    rules: dict[str, Sequence[float] | None] = {"today": None}
    if args.weights is not None:
        rules["rule"] = args.weights
    compare(samples, rules)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
