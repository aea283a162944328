"""``search``: thin command line. Parse, build a validated Config, call the pipeline, draw.

A user's mistake is one line on stderr and exit code 2, before anything is written.
Heavy imports (torch, optuna, mlflow) happen after parsing, so ``--help`` and errors are fast.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from search.config import (
    COSTS,
    DATASETS,
    DEVICES,
    FROZEN_WIDTH_WEIGHT,
    LAST_FROZEN_WIDTH_WEIGHT,
    PRUNERS,
    SAMPLERS,
    SAMPLES,
    SCORERS,
    SIMPLIFY_SWEEP,
    SIMPLIFY_THRESHOLD,
    WIDTH_WEIGHT,
    Config,
    ConfigError,
    StoreConfig,
    from_mapping,
    load_toml,
    parse_duration,
    parse_int_list,
)
from search.errors import UserError

if TYPE_CHECKING:
    from search.results import SearchResult, TrialCost

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
UI_PORT = 5000


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the bad value (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str) -> NoReturn:
    print(f"search: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def build_parser() -> Parser:
    parser = Parser(
        prog="search",
        description="Find good layer widths for convnets cheaply: frozen random lower layers score "
        "candidates, Optuna searches, MLflow records everything.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    run = commands.add_parser(
        "run",
        help="search width profiles within a time budget",
        description="Search width profiles with the cheap proxy score within a wall-clock budget. "
        "Works offline on the bundled digits dataset; state goes to --store (SQLite for Optuna and MLflow).",
    )
    run.add_argument("--config", type=Path, metavar="FILE", help="TOML file with [space], [model], [proxy], "
                     "[data], [search], [store] tables; flags given here override it")
    group = run.add_argument_group("budget")
    group.add_argument("--budget", metavar="DURATION", help="wall time for the whole command: 90s, 10m, 2h, 1h30m "
                       "(default 3m); no trial starts that could not finish in what is left")
    group.add_argument("--trials", type=int, metavar="N", help="stop after N finished trials in the study "
                       "(counting those of a resumed run)")
    add_data_arguments(run)
    add_space_arguments(run)
    group = add_proxy_arguments(run)
    group.add_argument("--scorer", metavar="NAME", help=f"what scores a trial: one of {', '.join(SCORERS)} "
                       "(default proxy; see search validate)")
    group = run.add_argument_group("objective and limits")
    group.add_argument("--objective", metavar="NAME", help="accuracy (default: the most accurate profile) or "
                       "pareto (accuracy up and --cost down: the result is the Pareto front)")
    group.add_argument("--cost", metavar="NAME", help=f"cost of --objective pareto: one of {', '.join(COSTS)} "
                       "(default params: all layers' parameters; macs: multiply-adds per image; latency: median "
                       "ms of a forward pass of --latency-batch images on the trial's device)")
    group.add_argument("--max-params", type=int, metavar="N", help="never train a profile with more parameters")
    group.add_argument("--max-macs", type=int, metavar="N", help="never train a profile with more multiply-adds "
                       "per image")
    group.add_argument("--max-latency-ms", type=float, metavar="T", help="never train a profile slower than T ms "
                       "per batch")
    group.add_argument("--latency-batch", type=int, metavar="B", help="images per timed batch (default 64)")
    group = run.add_argument_group("full training (second phase)")
    group.add_argument("--slim", action="store_true", default=None, help="then remove the winner's lazy kernels, "
                       "fine-tune (--fine-tune-epochs) and report the slimmer network (see search slim)")
    group.add_argument("--fine-tune-epochs", type=int, metavar="E", help="fine-tuning epochs of --slim (default 4)")
    group.add_argument("--top-k", type=int, metavar="K", help="train the K best proxy candidates in full "
                       "(default 3; 0 skips the phase); with --objective pareto the K front members that span "
                       "it: the most accurate, the cheapest within 1 point of it, the knee, ...")
    group.add_argument("--full-fraction", type=float, metavar="F", help="share of the budget kept for full "
                       "training, e.g. 0.4 (default; at most: the local backend goes on scoring into what the "
                       "best candidates' estimated training leaves); 0 skips the phase")
    add_full_arguments(run, group)
    group = run.add_argument_group("Ray (--backend ray)")
    group.add_argument("--backend", metavar="NAME", help="local (default: trials one after another here) or ray "
                       "(Ray Tune workers, ASHA pruning)")
    group.add_argument("--address", metavar="ADDR", help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 "
                       "(default: a local Ray started for this command)")
    group.add_argument("--cpus-per-trial", type=float, metavar="N", help="CPUs Ray reserves per trial (default 1)")
    group.add_argument("--gpus-per-trial", type=float, metavar="G", help="GPUs per trial, fractions allowed "
                       "(share memory without isolation; default 0)")
    group.add_argument("--gpus-per-full", type=float, metavar="G", help="GPUs per full-training task: with "
                       "--address the second phase runs on the cluster's workers too (default: --gpus-per-trial)")
    group.add_argument("--max-concurrent", type=int, metavar="N", help="trials at once (default: what the "
                       "resources allow)")
    group = run.add_argument_group("run")
    group.add_argument("--amp", action="store_true", default=None, help="mixed precision (bfloat16) on CUDA")
    group.add_argument("--pruner", metavar="NAME", help=f"one of {', '.join(PRUNERS)} (default hyperband)")
    group.add_argument("--sampler", metavar="NAME", help=f"one of {', '.join(SAMPLERS)} (default tpe; random is a "
                       "baseline)")
    group.add_argument("--seed", type=int, help="seed of the sampler and of every network's random weights")
    group.add_argument("--device", metavar="NAME", help=f"one of {', '.join(DEVICES)} (default auto)")
    add_store_arguments(run, tracking=True)
    run.add_argument("--resume", action="store_true", default=None, help="continue the latest (or --study) "
                     "study in the store with its own settings; finished trials are kept")
    run.add_argument("--study", metavar="NAME", help="study name (default: a new name from the time)")

    train = commands.add_parser(
        "train",
        help="train one width profile fully, from scratch or by progressive widening",
        description="Train one width profile in full: from scratch, or with --progressive partial|net2net "
        "at 1/2 of its widths, then widened to the target (loading the trained kernels). A parent MLflow "
        "run and a child run per stage.",
    )
    train.add_argument("--widths", required=True, metavar="W-W-...", help="the profile, like 16-32-64-64-128")
    add_full_arguments(train)
    train.add_argument("--batch-size", type=int, metavar="B", help="batch size (default 128)")
    train.add_argument("--lr", type=float, help="Adam learning rate (default 2e-3)")
    add_config_argument(train)
    add_data_arguments(train)
    add_machine_arguments(train, "seed of the random weights and batch order")

    validate = commands.add_parser(
        "validate",
        help="measure how well cheap scores rank candidates against full training",
        description="Sample width profiles across the space, train each fully with one recipe (from scratch "
        "unless --progressive or the config file says else; results are cached in the store), score each "
        "with every scorer, and report Spearman's rho and Kendall's tau against full accuracy with bootstrap "
        "95 percent intervals, the regret of each scorer's top pick and of its top k (top_k of the settings file, 3 "
        "by default: the candidates a search trains in full) and its cost. With --frozen-sweep: the cost and "
        "accuracy of the proxy for k = 0..L frozen layers of one profile.",
    )
    add_config_argument(validate)
    group = validate.add_argument_group("validation")
    group.add_argument("--candidates", type=int, metavar="N", help="profiles sampled from the space (default 24)")
    group.add_argument("--sample", choices=SAMPLES, help="spread: across the space, every overall width (default); "
                       "equal-width: one overall width (the middle of the space), different shapes")
    group.add_argument("--scorers", metavar="NAME,...", help=f"among {', '.join(SCORERS)} (default: all); with "
                       "the proxy, the table adds proxy_score, the search's score (the proxy's accuracy less its "
                       "width penalty), and width_term, the penalty alone (no training); with params too rank_mean, "
                       "the mean of their ranks")
    group.add_argument("--bootstrap", type=int, metavar="N", help="resamples for the 95%% intervals (default 1000)")
    group.add_argument("--full-seeds", type=int, metavar="N", help="full trainings per candidate with seeds "
                       "SEED..SEED+N-1 (default 2): the target is their mean, and the rho between seeds is the "
                       "noise ceiling")
    group.add_argument("--proxy-seeds", type=int, metavar="N", help="score the proxy with seeds SEED..SEED+N-1 "
                       "too (default 1; N times its cost): each seed's rho and how well two seeds agree, i.e. how "
                       "much of a difference between proxy settings is the proxy's own noise")
    group.add_argument("--workers", type=int, metavar="N", help="full trainings N at a time, in worker processes "
                       "sharing the data (default 1). For GPUs, where one small training keeps a few percent of the "
                       "card busy (14 at a time on an H100 trained 2-4x as many per minute); a 2-core CPU gains "
                       "little or nothing (0.87-1.22x). cost/full then divides by trainings timed N at a time, "
                       "as a line under the table says")
    group.add_argument("--frozen-sweep", action="store_true", help="instead of the above: for --widths and "
                       "k = 0..L frozen layers, trained params, s/epoch with and without the cache, val_acc")
    group.add_argument("--widths", metavar="W-W-...", help="the profile of --frozen-sweep")
    add_data_arguments(validate)
    add_space_arguments(validate)
    add_proxy_arguments(validate)
    add_full_arguments(validate)
    add_machine_arguments(validate, "seed of the sample, the weights and the batch order")

    inspect = commands.add_parser(
        "inspect",
        help="redraw the kernel statistics and pictures of a logged model",
        description="Load the weights logged by a full-training run (search train, or a 'full-*' run of "
        "search run) and write its kernel statistics and pictures to a folder.",
    )
    add_logged_model_arguments(inspect)
    inspect.add_argument("--out", type=Path, metavar="DIR", help="where to write (default STORE/inspect/RUN_ID)")
    inspect.add_argument("--analysis-images", type=int, metavar="N", help="validation images for the ablations "
                         "(default 512)")

    export = commands.add_parser(
        "export",
        help="write a logged model to a file you keep (search.load_checkpoint reads it)",
        description="Load the weights logged by a full-training run (the winner of search run, search train, "
        "slim or simplify), check them on the run's validation split, and write them with the architecture, the "
        "data settings and the input normalisation to one file that search.load_checkpoint reads.",
    )
    add_logged_model_arguments(export, lazy=False)
    export.add_argument("--out", type=Path, metavar="FILE", help="the file to write (default "
                        "STORE/models/RUN_ID.pt); an existing file is not overwritten")

    slim = commands.add_parser(
        "slim",
        help="remove a trained model's lazy kernels and fine-tune: the learned widths as a network",
        description="Load the weights logged by a full-training run, remove the kernels the kernel analysis calls "
        "lazy (at least one stays per layer), fine-tune briefly at half the full recipe's rate, and "
        "report parameters, multiply-adds, latency and validation accuracy before and after. A child MLflow run "
        "of RUN_ID holds the slimmed weights.",
    )
    add_logged_model_arguments(slim)
    add_fine_tune_arguments(slim)

    simplify = commands.add_parser(
        "simplify",
        help="snap near-symmetric kernels to their symmetric form, freeze them, fine-tune the rest",
        description="Load the weights logged by a full-training run, replace every kernel whose best symmetry "
        "score (mirror left-right or up-down, identical rows or columns, rotation by 90 or 180 degrees) is at least "
        "the threshold by its exact symmetric projection, freeze those kernels, fine-tune the others briefly at half "
        "the full recipe's rate, and report per layer the kernels snapped, the free kernel weights before and after, "
        "and validation accuracy before, right after snapping and after fine-tuning. A child MLflow run of RUN_ID "
        "holds the table, pictures of the kernels before and after, and (for one threshold) the weights. With "
        "--sweep: several thresholds, each from the trained weights, plus a control (nothing snapped, fine-tuned "
        "the same), as a table and a plot of accuracy against the share of weights removed.",
    )
    add_logged_model_arguments(simplify, lazy=False)
    simplify.add_argument("--threshold", type=float, metavar="S", help="snap kernels whose best symmetry score is "
                          f">= S, in (0, 1] (default {SIMPLIFY_THRESHOLD})")
    simplify.add_argument("--sweep", nargs="?", const=",".join(f"{s:g}" for s in SIMPLIFY_SWEEP), metavar="S,S,...",
                          help="instead: each of these thresholds and the control (default "
                          f"{','.join(f'{s:g}' for s in SIMPLIFY_SWEEP)})")
    simplify.add_argument("--layers", dest="simplify_layers", metavar="L,L,...", help="only these conv layers, "
                          "1-based (default: all)")
    add_fine_tune_arguments(simplify)

    submit = commands.add_parser(
        "submit",
        help="submit a search to a Ray cluster as a job",
        description="Submit 'search ARGS' to a Ray cluster through the Ray Jobs API and print the job id. "
        "The working directory (this checkout, without .venv, runs and caches) is uploaded; the cluster's image "
        "has the package installed (deploy/Dockerfile). The cluster token comes from RAY_AUTH_TOKEN, "
        "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token.",
        usage="search submit [--address URL] [--working-dir DIR] [--job-id ID] -- run ARGS...",
    )
    submit.add_argument("--address", metavar="URL", help="the Ray dashboard, like http://HEAD:8265 "
                        "(default: $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS)")
    submit.add_argument("--working-dir", type=Path, default=Path("."), metavar="DIR",
                        help="the checkout to upload (default .)")
    submit.add_argument("--job-id", metavar="ID", help="the job's id (default: Ray picks one)")
    submit.add_argument("search_args", nargs=argparse.REMAINDER, metavar="-- run ARGS",
                        help="the search command to run on the cluster, after --")

    jobs = commands.add_parser(
        "jobs",
        help="follow a submitted search: status, logs, stop",
        description="Follow a search submitted with 'search submit'.",
    )
    jobs.add_argument("action", choices=("status", "logs", "stop"), help="what to do")
    jobs.add_argument("job_id", metavar="JOB_ID", help="the id 'search submit' printed")
    jobs.add_argument("--address", metavar="URL", help="the Ray dashboard, like http://HEAD:8265 "
                      "(default: $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS)")
    jobs.add_argument("--follow", action="store_true", help="with logs: keep printing until the job ends")

    ui = commands.add_parser("ui", help="open the MLflow UI on the store", description="Start the MLflow UI on "
                             "the store's tracking database, bound to 127.0.0.1.")
    add_store_arguments(ui)
    ui.add_argument("--port", type=int, default=UI_PORT, help=f"port (default {UI_PORT})")
    return parser


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", metavar="NAME", help=f"one of {', '.join(DATASETS)} (default digits: "
                       "scikit-learn's bundled handwritten digits)")
    group.add_argument("--data-dir", type=Path, metavar="DIR", help="where torchvision datasets live")
    group.add_argument("--download", action="store_true", default=None,
                       help="download a torchvision dataset into --data-dir if it is not there")
    group.add_argument("--train-limit", type=int, metavar="N", help="use only the first N training images")
    group.add_argument("--val-limit", type=int, metavar="N", help="use only the first N validation images")


def add_full_arguments(parser: argparse.ArgumentParser, group: argparse._ArgumentGroup | None = None) -> None:
    group = group or parser.add_argument_group("full training")
    group.add_argument("--progressive", metavar="MODE", help="none (default: the target widths from scratch), or "
                       "progressive widening: partial (trained kernels in the first channels, fresh init for the "
                       "rest) or net2net (function-preserving)")
    group.add_argument("--full-epochs", type=int, metavar="N", help="epochs of full training, all stages together "
                       "(default 12; a widening splits them over its stages)")
    group.add_argument("--stages", type=int, metavar="S", help="widening stages: widths target/2^(S-1) ... "
                       "target (default 2)")
    group.add_argument("--epochs-per-stage", type=int, metavar="E", help="epochs per widening stage (default 6; "
                       "without --full-epochs, training lasts S*E epochs in any mode)")
    group.add_argument("--augment", action="store_true", default=None, help="random shifts (and flips for "
                       "cifar10) while training")
    group.add_argument("--warmup-epochs", type=float, metavar="E", help="linear learning-rate warm-up at the start "
                       "of every stage, in epochs (default 1)")
    group.add_argument("--decay", metavar="NAME", help="learning rate over the whole run: cosine (default: one decay "
                       "to zero across all stages) or constant")
    group.add_argument("--lazy-threshold", type=float, metavar="A", help="a layer's lazy kernels: the most that can be "
                       "zeroed together, least important first, while validation accuracy drops by less than A, "
                       "with the lower layers' lazy kernels zeroed already (default 0.005)")
    group.add_argument("--analysis-images", type=int, metavar="N", help="validation images for the kernel "
                       "ablations (default 512)")


def add_space_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search space")
    group.add_argument("--layers", type=int, metavar="N", help="number of conv layers (default 5)")
    group.add_argument("--width-range", metavar="MIN:MAX:STEP", help="widths every layer may take, as a range "
                       "like 8:256:8 (instead of --width-choices)")
    group.add_argument("--width-choices", metavar="W,W,...", help="the widths every layer may take (default "
                       "4,8,16,32,64)")
    group.add_argument("--frozen", metavar="K[,K...]", help="frozen random lower layers; several values let "
                       "the search choose (default 2)")


def proxy_images(text: str) -> int | str:
    """``--proxy-images``: a count, or ``all`` (kept as the word: the settings turn it into "every image")."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a count of images nor 'all'") from None


def add_proxy_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("proxy")
    group.add_argument("--proxy-epochs", type=int, metavar="E", help="epochs of the top per trial (default 4)")
    group.add_argument("--proxy-replicas", type=int, metavar="R", help="copies of the top, each with its own "
                       "random initial weights, trained side by side; the score is their mean (default 2)")
    group.add_argument("--proxy-images", type=proxy_images, metavar="N|all", help="train the top on the first N "
                       "training images (default 2000; all: every one)")
    group.add_argument("--width-weight", type=float, metavar="W", help="the score is the proxy's accuracy less W "
                       "per halving of each trained layer's width below the widest the space allows (default "
                       f"{WIDTH_WEIGHT}; all three weights 0: the accuracy alone)")
    group.add_argument("--frozen-width-weight", type=float, metavar="W", help="and less W per halving of each frozen "
                       f"layer's width below the last (default {FROZEN_WIDTH_WEIGHT}: a wide random layer is worth "
                       "more to the proxy than a wide layer to full training)")
    group.add_argument("--last-frozen-width-weight", type=float, metavar="W", help="and less W per halving of the "
                       f"last frozen layer's width (default {LAST_FROZEN_WIDTH_WEIGHT:g}, as the other frozen layers'; "
                       "0 ranked some data a little better and real digits worse)")
    group.add_argument("--frozen-per-replica", action="store_true", default=None, help="each copy of the top over "
                       "its own random frozen layers (seed + r), at the same training cost and replicas x the "
                       "feature memory (default: one set shared by the copies)")
    group.add_argument("--batch-size", type=int, metavar="B", help="batch size of the proxy and of full training "
                       "(default 128)")
    group.add_argument("--lr", type=float, help="Adam learning rate of the proxy and of full training (default 2e-3)")
    group.add_argument("--proxy-batch-size", type=int, metavar="B", help="the proxy's alone (default: --batch-size); "
                       "in validate, unlike --batch-size, it keeps the cached full trainings")
    group.add_argument("--proxy-lr", type=float, metavar="LR", help="the proxy's alone (default: --lr)")
    group.add_argument("--cache-mb", type=float, metavar="MB", help="keep a trial's frozen features in memory up "
                       "to this size, else recompute them per batch; features kept for later trials with the same "
                       "lower widths stay within it too (default 2048)")
    group.add_argument("--max-kernel-norm", type=float, metavar="C", help="max L2 norm of each conv kernel")
    group.add_argument("--max-column-norm", type=float, metavar="C", help="max L2 norm of each linear unit's weights")
    return group


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file (see search run --help)")


def add_logged_model_arguments(parser: argparse.ArgumentParser, lazy: bool = True) -> None:
    """RUN_ID, the store and where its data lives (and the lazy-kernel threshold where ``lazy``),
    for the commands that load a logged model."""
    parser.add_argument("run_id", metavar="RUN_ID", help="the MLflow run that holds model/model.pt")
    add_store_arguments(parser, tracking=True)
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="where the run's torchvision dataset lives "
                        "on this machine, if not where it was trained")
    if lazy:
        parser.add_argument("--lazy-threshold", type=float, metavar="A", help="lazy-kernel threshold (default: the "
                        "run's, else 0.005)")


def add_fine_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """--fine-tune-epochs, --fine-tune-lr, --device and --config, for slim and simplify."""
    parser.add_argument("--fine-tune-epochs", type=int, metavar="E", help="epochs of fine-tuning (default 4)")
    parser.add_argument("--fine-tune-lr", type=float, metavar="LR", help="learning rate of the fine-tuning "
                        "(default: half the full recipe's --lr)")
    parser.add_argument("--device", metavar="NAME", help=f"one of {', '.join(DEVICES)} (default auto)")
    add_config_argument(parser)


def logged_model_store(args: argparse.Namespace) -> StoreConfig:
    """The store a logged-model command reads, checked: it exists, its server answers, the threshold is sane."""
    store = StoreConfig(path=args.store or StoreConfig().path, tracking_uri=args.tracking_uri)
    if store.tracking_uri is None and not (store.path / "mlflow.db").is_file():
        fail(f"no tracking store in {str(store.path)!r}; pass --store or --tracking-uri")
    require_tracking_server(store.tracking_uri)
    lazy_threshold = getattr(args, "lazy_threshold", None)
    if lazy_threshold is not None and not 0 <= lazy_threshold <= 1:
        fail(f"lazy threshold {lazy_threshold!r} must be an accuracy change in [0, 1]")
    return store


def add_machine_arguments(parser: argparse.ArgumentParser, seed_help: str) -> None:
    """--seed, --device, --store and --tracking-uri, for the commands that train."""
    parser.add_argument("--seed", type=int, help=seed_help)
    parser.add_argument("--device", metavar="NAME", help=f"one of {', '.join(DEVICES)} (default auto)")
    add_store_arguments(parser, tracking=True)


def add_store_arguments(parser: argparse.ArgumentParser, tracking: bool = False) -> None:
    parser.add_argument("--store", type=Path, metavar="DIR", help="folder for the study, the MLflow store and "
                        "artifacts (default ./runs)")
    if tracking:
        parser.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking server (default: SQLite in the "
                            "store)")


# -- config from flags --------------------------------------------------------------


def first_given(*values: object) -> object:
    """The first value that is not None (None when all are)."""
    return next((v for v in values if v is not None), None)


def config_from_args(namespace: argparse.Namespace) -> Config:
    """The validated Config: defaults, then the --config file, then the flags given."""
    args = argparse.Namespace(**{**dict.fromkeys(FLAG_NAMES), **vars(namespace)})
    # --batch-size and --lr set the proxy's too where the command has a proxy (not in train)
    has_proxy = "proxy_epochs" in vars(namespace)
    config = from_mapping(load_toml(args.config)) if args.config else Config()
    sections: dict[str, dict[str, object]] = {
        "search": {"trials": args.trials, "seed": args.seed, "pruner": args.pruner, "sampler": args.sampler,
                   "device": args.device,
                   "top_k": args.top_k, "full_fraction": args.full_fraction, "scorer": args.scorer,
                   "backend": args.backend, "objective": args.objective, "cost": args.cost,
                   "max_params": args.max_params, "max_macs": args.max_macs, "max_latency_ms": args.max_latency_ms,
                   "latency_batch": args.latency_batch, "slim": args.slim},
        "fidelity": {"candidates": args.candidates, "sample": args.sample, "bootstrap": args.bootstrap,
                     "full_seeds": args.full_seeds, "proxy_seeds": args.proxy_seeds, "workers": args.workers,
                     "scorers": tuple(v.strip() for v in args.scorers.split(",") if v.strip())
                     if args.scorers is not None else None},
        "data": {
            "dataset": args.dataset,
            "data_dir": args.data_dir,
            "download": args.download,
            "train_limit": args.train_limit,
            "val_limit": args.val_limit,
        },
        "space": {"layers": args.layers},
        "proxy": {"epochs": args.proxy_epochs, "replicas": args.proxy_replicas, "train_images": args.proxy_images,
                  "width_weight": args.width_weight, "frozen_width_weight": args.frozen_width_weight,
                  "last_frozen_width_weight": args.last_frozen_width_weight,
                  "frozen_per_replica": args.frozen_per_replica,
                  "batch_size": first_given(args.proxy_batch_size, args.batch_size if has_proxy else None),
                  "lr": first_given(args.proxy_lr, args.lr if has_proxy else None), "cache_mb": args.cache_mb,
                  "amp": args.amp},
        "ray": {"address": args.address, "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial,
                "gpus_per_full": args.gpus_per_full,
                "max_concurrent": args.max_concurrent},
        "full": {"mode": args.progressive, "stages": args.stages, "epochs_per_stage": args.epochs_per_stage,
                 "epochs": args.full_epochs,
                 "augment": args.augment, "batch_size": args.batch_size, "lr": args.lr,
                 "lazy_threshold": args.lazy_threshold, "analysis_images": args.analysis_images,
                 "warmup_epochs": args.warmup_epochs, "amp": args.amp, "decay": args.decay,
                 "fine_tune_epochs": args.fine_tune_epochs},
        "model": {"max_kernel_norm": args.max_kernel_norm, "max_column_norm": args.max_column_norm},
        "store": {"path": args.store, "tracking_uri": args.tracking_uri, "resume": args.resume,
                  "study_name": args.study},
    }
    if args.budget is not None:
        sections["search"]["budget_s"] = parse_duration(args.budget)
    if args.width_range is not None:
        parts = args.width_range.split(":")
        if len(parts) != 3:
            raise ConfigError(f"width range {args.width_range!r} is not MIN:MAX:STEP like 8:256:8")
        low, high, step = (parse_int_list(part, "width")[0] for part in parts)
        sections["space"].update(width_min=low, width_max=high, width_step=step, layer_choices=None,
                                 width_choices=None)
    if args.frozen is not None:
        sections["space"]["frozen_layers"] = tuple(
            int(v) if v.strip().isdigit() else _bad_frozen(v) for v in args.frozen.split(",")
        )
    given = {name: {k: v for k, v in values.items() if v is not None} for name, values in sections.items()}
    config = from_mapping({name: values for name, values in given.items() if values}, base=config)
    ray_flags = [name for name in ("address", "cpus_per_trial", "gpus_per_trial", "gpus_per_full", "max_concurrent")
                 if getattr(args, name) is not None]
    if ray_flags and config.search.backend != "ray":
        raise ConfigError(f"--{ray_flags[0].replace('_', '-')} needs --backend ray")
    if args.width_choices is not None:
        choices = parse_int_list(args.width_choices, "width")
        config = replace(config, space=replace(config.space, width_choices=choices, layer_choices=None))
    if args.epochs_per_stage is not None:  # the flag counts: a settings file's [full] epochs would override it
        if args.full_epochs is not None:
            raise ConfigError(f"--full-epochs {args.full_epochs} and --epochs-per-stage {args.epochs_per_stage} "
                              "both set the training's length; give one of them")
        config = replace(config, full=replace(config.full, epochs=None))
    config = config.validate()
    require_tracking_server(config.store.tracking_uri)
    return config


def require_tracking_server(tracking_uri: str | None) -> None:
    """A tracking server that does not answer is a one-line error in seconds, before anything is written."""
    if tracking_uri is None:
        return
    from search.tracking import check_server

    problem = check_server(tracking_uri)
    if problem is not None:
        raise ConfigError(problem)


FLAG_NAMES = (
    "config", "budget", "trials", "seed", "pruner", "sampler", "device", "dataset", "data_dir", "download",
    "train_limit", "val_limit", "layers", "width_range", "width_choices", "frozen", "proxy_epochs", "proxy_replicas",
    "proxy_images", "width_weight", "frozen_width_weight", "last_frozen_width_weight", "frozen_per_replica",
    "batch_size", "lr", "proxy_batch_size", "proxy_lr", "cache_mb",
    "max_kernel_norm", "max_column_norm", "store", "tracking_uri", "resume", "study", "progressive", "stages",
    "epochs_per_stage", "full_epochs", "augment", "top_k", "full_fraction", "lazy_threshold", "analysis_images",
    "warmup_epochs", "decay", "scorer", "candidates", "sample", "scorers", "bootstrap", "full_seeds", "proxy_seeds",
    "workers", "backend",
    "address", "cpus_per_trial", "gpus_per_trial", "gpus_per_full", "max_concurrent", "amp", "objective", "cost",
    "max_params", "max_macs", "max_latency_ms", "latency_batch", "slim", "fine_tune_epochs", "fine_tune_lr",
)


def _bad_frozen(value: str) -> NoReturn:
    raise ConfigError(f"frozen layers {value.strip()!r} is not a non-negative integer")


# -- commands -----------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, started_at: float) -> int:
    config = config_from_args(args)
    from search.budget import Budget
    from search.progress import SearchProgress
    from search.study import run_search

    quiet_libraries()
    if config.search.backend == "ray":
        from search.backends.ray_tune import warn_fractional_gpus

        warn_fractional_gpus(config, lambda text: print(f"search: warning: {text}", file=sys.stderr))
    progress = SearchProgress()
    try:
        with progress:
            result = run_search(config, Budget(config.search.budget_s, started_at), on_event=progress.handle)
    except KeyboardInterrupt:
        print(f"search: interrupted; continue with: search run --resume --store {config.store.path}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print_result(result, args, config.full.mode)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    widths = parse_int_list(args.widths, "width")
    namespace = vars(args).copy()
    namespace.update(layers=len(widths), frozen="0")  # full training freezes nothing
    config = config_from_args(argparse.Namespace(**namespace))
    from rich.markup import escape

    from models import format_widths
    from search.progress import TrainProgress, console, layers_table
    from search.study import run_training

    quiet_libraries()
    try:
        with TrainProgress() as progress:
            outcome = run_training(config, widths, on_event=progress.handle)
    except KeyboardInterrupt:
        print("search: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    result = outcome.result
    console.print(
        f"{result.mode} training of {format_widths(result.widths)}: val_acc {result.val_acc:.4f} "
        f"in {result.seconds:.1f} s (parent run {outcome.parent_run_id})"
    )
    if outcome.analysis is not None:
        console.print(layers_table(outcome.analysis))
    console.print(f"Keep it: [bold]{escape(export_command(args, outcome.parent_run_id))}[/]")
    if config.store.tracking_uri is None:  # the store's own SQLite, which search ui opens
        console.print(f"Open the MLflow UI: [bold]search ui --store {config.store.path}[/]")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    namespace = vars(args).copy()
    widths = None
    if args.frozen_sweep:
        if args.widths is None:
            fail("--frozen-sweep needs --widths, like --widths 16-32-64-64-128")
        widths = parse_int_list(args.widths, "width")
        namespace.update(layers=len(widths), frozen="0")
    elif args.widths is not None:
        fail("--widths goes with --frozen-sweep; validate samples its candidates from the space")
    if args.frozen_sweep and args.workers is not None:
        fail("--workers goes with validate's full trainings; --frozen-sweep trains none")
    config = config_from_args(argparse.Namespace(**namespace))
    from models import format_widths
    from search.progress import (
        ceiling_line,
        console,
        frozen_sweep_table,
        proxy_seeds_line,
        timing_line,
        validation_table,
        width_bias_line,
    )
    from search.validate import CandidateResult, run_frozen_sweep, run_validation

    quiet_libraries()
    try:
        if widths is not None:
            rows, run_id = run_frozen_sweep(config, widths, on_row=lambda row: console.print(
                f"  k={row.frozen_layers}  val_acc {row.val_acc:.4f}  {row.epoch_s_cached:.3f} s/epoch cached, "
                f"{row.epoch_s_uncached:.3f} not"))
            console.print(frozen_sweep_table(rows, format_widths(widths), config.proxy.epochs))
            console.print(f"MLflow run {run_id}")
            return 0

        def show(index: int, total: int, c: CandidateResult) -> None:
            source = "cached" if c.cached else f"trained in {c.full_s:.1f} s per seed"
            if 0 < c.cached_seeds < len(c.replicas):
                source = f"{c.cached_seeds} cached, {len(c.replicas) - c.cached_seeds} {source}"
            seeds = " / ".join(f"{acc:.4f}" for acc in c.replicas)
            console.print(f"  {index + 1:>3}/{total}  {format_widths(c.widths):<24} full val_acc "
                          f"{c.val_acc:.4f} (seeds {seeds}; {source})")

        def trained(done: int, total: int, entry: dict) -> None:
            console.print(f"  full training {done:>3}/{total}  {entry['widths']:<24} seed {entry['seed']}  "
                          f"val_acc {entry['val_acc']:.4f}  {entry['seconds']:.1f} s")

        shape = "equal-width " if config.fidelity.sample == "equal-width" else ""
        at_once = f", {config.fidelity.workers} at a time" if config.fidelity.workers > 1 else ""
        console.print(f"Validating {', '.join(config.fidelity.scorers)} on {config.fidelity.candidates} {shape}"
                      f"profiles of {config.data.dataset}; full training: {config.full.describe()}, "
                      f"{config.fidelity.full_seeds} seed(s) each{at_once}")
        result = run_validation(config, on_candidate=show, on_training=trained)
    except KeyboardInterrupt:
        print("search: interrupted; finished full trainings are cached in the store", file=sys.stderr)
        return EXIT_INTERRUPTED
    console.print(validation_table(result))
    console.print(ceiling_line(result))
    for line in (width_bias_line(result), proxy_seeds_line(result), timing_line(result)):
        if line is not None:
            console.print(line)
    cached, trainings = result.trainings
    seeds = f"{result.full_seeds} seed{'s' if result.full_seeds > 1 else ''}"
    console.print(f"{cached} of {trainings} full trainings ({len(result.candidates)} candidates x {seeds}) came "
                  f"from the cache; MLflow run {result.parent_run_id}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    store = logged_model_store(args)
    out = args.out or store.path / "inspect" / args.run_id
    if args.analysis_images is not None and args.analysis_images < 1:
        fail(f"analysis images {args.analysis_images!r} is not a positive integer")
    from models import format_widths
    from search.full import inspect_run
    from search.progress import console, layers_table

    quiet_libraries()
    analysis = inspect_run(store, args.run_id, out, args.data_dir, args.analysis_images, args.lazy_threshold)
    console.print(layers_table(analysis))
    console.print(f"learned widths {format_widths(analysis.learned_widths)} "
                  f"(searched {format_widths(analysis.widths)}); statistics and pictures in {out}/")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    store = logged_model_store(args)
    out = args.out or store.path / "models" / f"{args.run_id}.pt"
    from rich.markup import escape

    from models import format_widths
    from search.full import export_model
    from search.progress import console

    quiet_libraries()
    done = export_model(store, args.run_id, out, args.data_dir)
    logged = "" if done.logged_val_acc is None else f" (logged {done.logged_val_acc:.4f})"
    console.print(escape(f"{format_widths(done.widths)}: val_acc {done.val_acc:.4f} on the run's validation split"
                         f"{logged}; written to {done.path}"))
    load = f"from search import load_checkpoint; model, meta = load_checkpoint({str(done.path)!r})"
    console.print(f"Load it: [bold]{escape(load)}[/]; " + escape("inputs are (image - meta['input_mean']) / "
                                                               "meta['input_std'] per channel"))
    return 0


def fine_tune_setup(args: argparse.Namespace) -> tuple[StoreConfig, Config]:
    """The store and config of slim and simplify, their fine-tuning rate checked."""
    store = logged_model_store(args)
    config = config_from_args(args)
    if args.fine_tune_lr is not None and not args.fine_tune_lr > 0:
        fail(f"fine-tune learning rate {args.fine_tune_lr!r} must be positive")
    return store, config


def cmd_slim(args: argparse.Namespace) -> int:
    store, config = fine_tune_setup(args)
    from rich.markup import escape

    from search.progress import console, slim_table
    from search.session import resolve_device
    from search.slim import slim_run

    quiet_libraries()
    report = slim_run(store, args.run_id, config.full, config.full.fine_tune_epochs, args.fine_tune_lr,
                      resolve_device(config.search.device), args.data_dir, args.lazy_threshold)
    console.print(slim_table(report))
    console.print(f"slimmed weights in run {report.run_id} (a child of {args.run_id}); keep them: "
                  f"[bold]{escape(export_command(args, report.run_id))}[/]")
    return 0


def simplify_thresholds(args: argparse.Namespace) -> list[float | None]:
    """The thresholds ``search simplify`` runs: one (``--threshold``), or the sweep's and the
    control (``None``); each checked to lie in (0, 1]."""
    if args.sweep is not None and args.threshold is not None:
        fail("give --threshold S or --sweep S,S,..., not both")
    if args.sweep is None:
        values = [SIMPLIFY_THRESHOLD if args.threshold is None else args.threshold]
    else:
        values = []
        for text in args.sweep.split(","):
            try:
                values.append(float(text))
            except ValueError:
                fail(f"--sweep {args.sweep!r}: {text.strip()!r} is not a number")
    for value in values:
        if not 0 < value <= 1:
            fail(f"threshold {value!r} must be a symmetry score in (0, 1]")
    if args.sweep is None:
        return list(values)
    return [None, *sorted(set(values), reverse=True)]


def simplify_layers(args: argparse.Namespace) -> list[int] | None:
    """``--layers`` as 1-based layer numbers (``simplify_run`` checks them against the model)."""
    if args.simplify_layers is None:
        return None
    chosen = []
    for text in args.simplify_layers.split(","):
        if not text.strip().isdigit() or int(text) < 1:
            fail(f"--layers {args.simplify_layers!r}: {text.strip()!r} is not a layer number (1, 2, ...)")
        chosen.append(int(text))
    return sorted(set(chosen))


def cmd_simplify(args: argparse.Namespace) -> int:
    store, config = fine_tune_setup(args)
    thresholds = simplify_thresholds(args)
    layers = simplify_layers(args)
    from rich.markup import escape

    from search.progress import console, simplify_line, simplify_table
    from search.session import resolve_device
    from search.simplify import simplify_run

    quiet_libraries()
    reports = simplify_run(store, args.run_id, config.full, thresholds, config.full.fine_tune_epochs,
                           args.fine_tune_lr, layers, resolve_device(config.search.device), args.data_dir,
                           on_report=lambda r: console.print(simplify_line(r)))
    console.print(simplify_table(reports))
    kept = "the simplified weights, " if len(reports) == 1 else ""
    keep = f"; keep them: [bold]{escape(export_command(args, reports[0].run_id))}[/]" if len(reports) == 1 else ""
    console.print(f"{kept}table and pictures in run {reports[0].run_id} (a child of {args.run_id}){keep}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    rest = list(args.search_args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if not rest or rest[0] not in ("run", "validate", "train"):
        fail("give the search to run after --, like: search submit --address http://HEAD:8265 -- run --budget 2h")
    build_parser().parse_args(rest)  # a typo fails here, not on the cluster
    from search import jobs

    job_id = jobs.submit(args.address, args.working_dir, rest, args.job_id)
    print(job_id)
    print(f"Follow it: search jobs status {job_id}; search jobs logs --follow {job_id}", file=sys.stderr)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from search import jobs

    if args.action == "status":
        print(jobs.status(args.address, args.job_id))
    elif args.action == "logs":
        jobs.logs(args.address, args.job_id, follow=args.follow)
    else:
        print("stopping" if jobs.stop(args.address, args.job_id) else "not running")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    store = StoreConfig(path=args.store or StoreConfig().path)
    if not (store.path / "mlflow.db").is_file():
        fail(f"no tracking store in {str(store.path)!r}; run 'search run' first or pass --store")
    command = [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", store.mlflow_uri,
        "--default-artifact-root", store.artifact_root.as_uri(),
        "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1",
    ]
    print(f"MLflow UI on {runs_page(store.path / 'mlflow.db', args.port)} (Ctrl-C stops it)", flush=True)
    os.execv(sys.executable, command)
    return 0  # not reached


def runs_page(database: Path, port: int) -> str:
    """The experiment's training-runs page: MLflow 3's UI opens an experiment on its GenAI
    overview in a browser that never chose "Model training" (the experiment's kind tag does
    not change that in 3.17), so we link the runs table itself."""
    import sqlite3
    from contextlib import closing

    from search.tracking import EXPERIMENT

    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            row = connection.execute("SELECT experiment_id FROM experiments WHERE name = ?", (EXPERIMENT,)).fetchone()
    except sqlite3.Error:
        row = None
    base = f"http://127.0.0.1:{port}"
    return f"{base}/#/experiments/{row[0]}/runs" if row else base


def print_result(result: SearchResult, args: argparse.Namespace, full_mode: str) -> None:
    from rich.markup import escape

    from search.progress import console, full_table, pareto_table, results_table, slim_table

    console.print(pareto_table(result) if result.objective == "pareto" else results_table(result))
    if result.best is None:
        partial = max((t for t in result.trials if t.reached is not None), key=lambda t: t.reached or 0.0,
                      default=None)
        hint = f"; the best partial one: trial {partial.number}, {partial.label}, reached {partial.reached:.4f}" \
            if partial is not None else ""
        advice = "every trial failed (the errors are above and on their MLflow runs)" \
            if result.trials and result.count("FAIL") == len(result.trials) else "give the search more time (--budget)"
        console.print(f"[bold]No trial completed[/]{hint}: {advice}.")
    if result.full:
        console.print(full_table(result, full_mode))
        winner = result.winner
        if winner is not None:
            console.print(f"Winner (* above): [bold]{winner.label}[/]{winner.kept_note}, "
                          f"full val_acc {winner.val_acc:.4f}, "
                          f"learned widths {winner.learned_label or 'not measured'}; run {winner.run_id}. "
                          f"Keep it: [bold]{escape(export_command(args, winner.run_id))}[/]")
        cost = result.trial_cost
        if cost is not None:
            console.print(trial_cost_line(cost))
        if len(result.full) < result.full_planned:
            console.print(f"Trained {len(result.full)} of the top {result.full_planned} in full: the budget fit no "
                          "more (a longer --budget, or a smaller --top-k, trains every one it picks).")
    if result.full_skipped and result.best is not None:
        command = train_command(args, result.best.label)
        console.print(f"No time was left to train in full: the best profile by the {result.scorer} is "
                      f"[bold]{result.best.label}[/]. Train it with: [bold]{escape(command)}[/]")
    if result.slim is not None:
        console.print(slim_table(result.slim))
    if result.teardown_error is not None:
        console.print(f"[yellow]Ray did not shut down cleanly ({escape(result.teardown_error)}); the results above "
                      "are recorded.[/]")
    console.print(
        f"{result.count('COMPLETE')} complete, {result.count('PRUNED')} pruned, {result.count('FAIL')} failed"
        f"{f', {rejected} rejected (over a limit)' if (rejected := result.count('REJECTED')) else ''} "
        f"in {result.elapsed_s:.0f} s{overrun_note(result)}. Study [bold]{result.study_name}[/] in {result.store}/"
    )
    if result.tracking_uri == StoreConfig(path=result.store).mlflow_uri:  # the store's own, which search ui opens
        console.print(f"Open the MLflow UI: [bold]search ui --store {result.store}[/]")
    else:
        console.print(f"MLflow runs are on {result.tracking_uri} (parent run {result.parent_run_id})")


def train_command(args: argparse.Namespace, widths: str) -> str:
    """``search train`` for ``widths`` with every option of this run that ``search train`` takes
    too (settings file, data, full training, seed, device, store), ready to paste."""
    import shlex

    shared = vars(build_parser().parse_args(["train", "--widths", widths]))  # every train option, None
    parts = ["search", "train", "--widths", widths]
    for dest in shared:
        value = getattr(args, dest, None)
        if dest in ("command", "widths") or value is None or value is False:
            continue
        parts.append("--" + dest.replace("_", "-"))
        if value is not True:
            parts.append(str(value))
    return shlex.join(parts)


def export_command(args: argparse.Namespace, run_id: str) -> str:
    """``search export`` of ``run_id`` from this run's store or tracking server, ready to paste."""
    import shlex

    parts = ["search", "export", run_id]
    for flag, dest in (("--store", "store"), ("--tracking-uri", "tracking_uri")):
        if (value := getattr(args, dest, None)) is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def trial_cost_line(cost: TrialCost) -> str:
    """What a trial cost against a full training, in words.

    Example:
        >>> from search.results import TrialCost
        >>> print(trial_cost_line(TrialCost(38, 1.9, 3, 23.75, 0.19)))  # doctest: +NORMALIZE_WHITESPACE
        Cost of a trial: 1.9 s on average (38 trials; pruned ones stop early), 0.080 of a full
        training here (23.8 s on average); the complete trial of each of the 3 trained in full: 0.190 of
        its own (mean).
    """
    which = "the one" if cost.full == 1 else f"each of the {cost.full}"
    own = "" if cost.complete_share is None else \
        f"; the complete trial of {which} trained in full: {cost.complete_share:.3f} of its own (mean)"
    return (f"Cost of a trial: {cost.mean_trial_s:.1f} s on average ({cost.trials} "
            f"trial{'s' if cost.trials > 1 else ''}; pruned ones stop early), {cost.share:.3f} of a full training "
            f"here ({cost.mean_full_s:.1f} s on average){own}.")


def overrun_note(result: SearchResult) -> str:
    """What the last line says of time past the budget: nothing under a second."""
    if result.budget_s is None or result.overrun_s < 1.0:
        return ""
    why = ": no trial had completed by then, and a search ends with an answer" if result.late_answer else ""
    return f" ({result.overrun_s:.0f} s past the {result.budget_s:.0f} s budget{why})"


def quiet_libraries() -> None:
    import logging
    import warnings

    import optuna

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # bars on stderr for each artifact
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="mlflow")


def main(argv: list[str] | None = None) -> int:
    started_at = time.monotonic()  # the budget counts from here, imports included
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args, started_at)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "inspect":
            return cmd_inspect(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "submit":
            return cmd_submit(args)
        if args.command == "slim":
            return cmd_slim(args)
        if args.command == "simplify":
            return cmd_simplify(args)
        if args.command == "jobs":
            return cmd_jobs(args)
        return cmd_ui(args)
    except UserError as error:
        fail(str(error))


def entry() -> NoReturn:
    """The ``search`` console script: ``main``, then an exit that skips collecting every object.

    Python's teardown garbage-collects all the objects that torch, Ray, MLflow and Optuna
    created: 3-4 s on 2 cores after a Ray search, past the command's budget (its work has
    ended). Frozen objects are left to the operating system; files and runs are closed by then.
    """
    try:
        code = main()
    finally:
        gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
