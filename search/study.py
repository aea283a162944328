"""The pipeline of one search: store, data, Optuna study, MLflow parent run, trials, result.

``run_search`` is what ``search run`` calls. It owns the side effects at the top (the
store folder, the study's SQLite storage, the MLflow parent run) and hands the study to a
backend, which runs each trial with ``search.trial.run_trial`` (the same function for both)
and tells Optuna the outcome.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from models import format_widths
from search.analysis import Analysis
from search.backends.local import LocalTrials
from search.budget import Budget
from search.config import Config, ConfigError, from_mapping
from search.cost import measure_cost, over_limit
from search.data import TensorData
from search.events import EventHandler, SearchStarted
from search.full import FullPhasePlan, full_phase_candidates, pick_candidates, run_full_phase, train_candidate
from search.pareto import pareto_front
from search.progressive import FullResult
from search.proxy import describe
from search.results import FullSummary, SearchResult, SlimReport, TrialSummary, best_full
from search.session import load_data, open_store, resolve_device
from search.space import make_sampler, narrowest, starting_params
from search.tracking import Tracker

# Sections of the config that define a study; a resumed search takes them from the store.
STUDY_SECTIONS = ("space", "model", "proxy", "data")
TOP_CANDIDATES = 5


# -- the pipeline -------------------------------------------------------------------


def config_to_json(config: Config) -> str:
    sections = {name: dataclasses.asdict(getattr(config, name)) for name in STUDY_SECTIONS}
    return json.dumps(sections, default=str)


def study_config(config: Config, stored_json: str) -> Config:
    """The resumed study's own space/model/proxy/data over this command's other settings. A study
    stored before ``width_weight`` existed scored the accuracy alone, one stored before
    ``frozen_width_weight`` existed took ``width_weight`` off frozen layers too, and one stored
    before ``last_frozen_width_weight`` took ``frozen_width_weight`` off every frozen layer: each
    keeps its score."""
    stored = json.loads(stored_json)
    proxy = stored.setdefault("proxy", {})
    proxy.setdefault("width_weight", 0.0)
    proxy.setdefault("frozen_width_weight", proxy["width_weight"])
    proxy.setdefault("last_frozen_width_weight", proxy["frozen_width_weight"])
    return from_mapping(stored, base=config)


def open_storage(config: Config) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(config.store.optuna_url)


def latest_study_name(storage: optuna.storages.BaseStorage) -> str | None:
    studies = [s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    studies.sort(key=lambda s: s.user_attrs.get("created_at", 0.0))
    return studies[-1].study_name if studies else None


class AfterFirstComplete(optuna.pruners.BasePruner):
    """Prunes as ``inner`` does once the study has a complete trial; never before.

    Hyperband compares a trial with the others of its bracket: with no finished trial yet it
    pruned the first trials of short searches, which then ended with no result at all.
    """

    def __init__(self, inner: optuna.pruners.BasePruner) -> None:
        self.inner = inner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            return False
        return self.inner.prune(study, trial)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "hyperband":
        # Multi-fidelity: the resource is the proxy epoch.
        inner: optuna.pruners.BasePruner = optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=3)
    elif name == "median":
        inner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    else:
        return optuna.pruners.NopPruner()
    return AfterFirstComplete(inner)


def prepare_resume(config: Config) -> tuple[Config, str]:
    """For ``--resume``: the study to continue and its stored settings. Writes nothing."""
    db = config.store.path / "optuna.db"
    if not db.is_file():
        raise ConfigError(f"nothing to resume: no study in store {str(config.store.path)!r}")
    storage = open_storage(config)
    name = config.store.study_name or latest_study_name(storage)
    if name is None:
        raise ConfigError(f"nothing to resume: no study in store {str(config.store.path)!r}")
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise ConfigError(f"study {name!r} is not in store {str(config.store.path)!r}") from None
    stored = study.user_attrs.get("config")
    return (study_config(config, stored) if stored else config), name


def run_search(config: Config, budget: Budget, on_event: EventHandler | None = None) -> SearchResult:
    """Run (or, with ``config.store.resume``, continue) one search within ``budget``.

    Example:
        >>> import tempfile, time
        >>> from search.config import DataConfig, ModelConfig, ProxyConfig, SearchConfig, SpaceConfig, StoreConfig
        >>> from search.budget import Budget
        >>> cfg = Config(space=SpaceConfig(layers=2, width_choices=(4, 8), frozen_layers=(1,)),
        ...              model=ModelConfig(hidden=(8,)), proxy=ProxyConfig(epochs=1),
        ...              data=DataConfig(dataset="synthetic", synthetic_train=64, synthetic_val=32,
        ...                              synthetic_image_size=8),
        ...              search=SearchConfig(budget_s=60, trials=2, top_k=0),
        ...              store=StoreConfig(path=Path(tempfile.mkdtemp())))
        >>> result = run_search(cfg.validate(), Budget(60, time.monotonic()))
        >>> result.count("COMPLETE")
        2
    """
    emit = on_event or (lambda event: None)
    device = resolve_device(config.search.device)  # before anything else: a missing GPU is the first error
    study_name = None
    if config.store.resume:
        config, study_name = prepare_resume(config)
    data = load_data(config)
    check_limits_reachable(config, data)
    if config.search.backend == "ray":
        from search.backends.ray_tune import check_tracking_reachable, connect

        connect(config)
        check_tracking_reachable(config)

    # Past this point the command writes: the store, the study, the MLflow runs.
    tracker = open_store(config.store)
    storage = open_storage(config)
    if study_name is None:
        study_name = new_study_name(storage, config.store.study_name)
        study = optuna.create_study(storage=storage, study_name=study_name, directions=directions(config))
        study.set_user_attr("config", config_to_json(config))
        study.set_user_attr("created_at", time.time())
        parent_id = tracker.start_run(
            study_name,
            params={**config.to_flat_dict(), "seed": config.search.seed},
            tags={"study": study_name, "phase": "search", "dataset": data.name},
        )
        study.set_user_attr("mlflow_parent_run_id", parent_id)
    else:
        study = optuna.load_study(study_name=study_name, storage=storage)
        if len(study.directions) != len(directions(config)):
            stored = "pareto" if len(study.directions) > 1 else "accuracy"
            raise ConfigError(f"study {study_name!r} was searched with --objective {stored}; "
                              f"--resume it with that objective, not {config.search.objective!r}")
        parent_id = study.user_attrs["mlflow_parent_run_id"]
        fail_stale_trials(study, tracker, parent_id)
        tracker.reopen_run(parent_id)

    previous = len(study.trials)
    if previous == 0:
        study.enqueue_trial(starting_params(config.space))
    # Re-seed on resume so the sampler's random start does not replay the first run's picks.
    study.sampler = make_sampler(config.search.sampler, config.search.seed + previous)
    # Optuna's pruners take one objective; a pareto search prunes by dominance (search/pareto.py).
    pareto = config.search.objective == "pareto"
    study.pruner = optuna.pruners.NopPruner() if pareto else make_pruner(config.search.pruner, config.proxy.epochs)
    proxy = config.proxy
    last = (f", {proxy.last_frozen_width_weight:g} of the last frozen one's"
            if proxy.last_frozen_width_weight != proxy.frozen_width_weight else "")
    penalty = (f", less {proxy.width_weight:g} per halving of a trained layer's width below the widest "
               f"({proxy.frozen_width_weight:g} of a frozen one's{last})" if proxy.penalised else "")
    scoring = (f"proxy, {describe(config.proxy, data.x_train.shape[0])}{penalty}" if config.search.scorer == "proxy"
               else config.search.scorer)
    emit(SearchStarted(study_name, previous, budget.total_s, config.proxy.epochs, str(device), data.name, scoring))

    # The proxy phase ends where the share kept for full training begins (locally, later when the
    # best candidates are expected to need less: LocalTrials.current_budget).
    proxy_budget = budget.first(1 - config.search.full_fraction) if config.search.full_phase else budget
    plan = FullPhasePlan(config, data) if config.search.full_phase else None
    status = "FINISHED"
    full: list[FullSummary] = []
    ranked: list[TrialSummary] = []  # the candidates of the second phase, best first
    slimmed: SlimReport | None = None
    proxy_phase_s: float | None = None
    teardown_errors: list[str | None] = []
    try:
        if config.search.backend == "ray":
            from search.backends.ray_tune import RayTrials

            RayTrials(study, config, data, tracker, parent_id, proxy_budget, emit, whole_budget=budget).run()
        else:
            LocalTrials(study, config, data, tracker, parent_id, proxy_budget, emit, whole_budget=budget,
                        full_plan=plan).run()
        proxy_phase_s = budget.elapsed_s()
        if config.search.full_phase:
            ranked = full_phase_candidates(config, study.trials)
            if config.search.backend == "ray" and config.ray.address is not None:  # a cluster: tasks on workers
                from search.backends.ray_tune import run_full_phase_on_ray

                full = run_full_phase_on_ray(config, budget, data, tracker, parent_id, study_name, ranked, emit)
            else:
                if config.search.backend == "ray":
                    # A private local Ray has no other machine to send work to: its tasks would only
                    # add a fresh worker's start-up (5-10 s of imports on 2 cores; 60 s searches then
                    # stopped their winner half-way). Ray's teardown comes out of the proxy's share.
                    teardown_errors.append(shutdown_ray())
                full = run_full_phase(config, budget, data, tracker, parent_id, study_name, ranked, emit, plan)
            slimmed = slim_winner(config, budget, device, full, tracker, parent_id)
    except BaseException:
        status = "KILLED"
        raise
    finally:
        if config.search.backend == "ray":
            teardown_errors.append(shutdown_ray())  # before the clock: Ray's teardown is part of the search
        teardown_error = "; ".join(e for e in teardown_errors if e is not None) or None
        if teardown_error is not None:  # the trials are recorded: the parent run is closed all the same
            tracker.set_tags(parent_id, {"ray_shutdown_error": teardown_error[:5000]})
        result = SearchResult(
            study_name=study_name,
            parent_run_id=parent_id,
            store=config.store.path,
            tracking_uri=config.store.mlflow_uri,
            trials=tuple(TrialSummary.from_trial(t) for t in study.trials),
            elapsed_s=budget.elapsed_s(),
            full=tuple(full),
            scorer=config.search.scorer,
            objective=config.search.objective,
            cost=config.search.cost,
            slim=slimmed,
            budget_s=budget.total_s,
            full_skipped=config.search.full_phase and not full and bool(ranked),
            full_planned=len(pick_candidates(ranked, config.search.top_k)),
            late_answer=answered_late(study, budget),
            proxy_phase_s=proxy_phase_s,
            teardown_error=teardown_error,
        )
        close_parent(tracker, result, status)
    return result


def answered_late(study: optuna.Study, budget: Budget) -> bool:
    """Whether the study's first completed trial ended after the budget did: a search runs trials
    past its budget until one completes (``search.budget.has_completed``)."""
    ended = [t.datetime_complete.timestamp() for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
             if t.datetime_complete is not None]
    deadline = time.time() + budget.total_s - budget.elapsed_s()
    return bool(ended) and min(ended) > deadline


def front_rows(front: list[TrialSummary], full: tuple[FullSummary, ...]) -> list[dict[str, Any]]:
    """The Pareto front as a table: accuracy, every cost, and to which fidelity it was trained."""
    trained = {f.trial: f for f in full}
    rows = []
    for member in front:
        done = trained.get(member.number)
        rows.append({"trial": member.number, "widths": member.label, "frozen_layers": member.frozen_layers,
                     "proxy_score": member.score, "proxy_val_acc": member.accuracy,
                     "total_params": member.total_params, "macs": member.macs,
                     "latency_ms": member.latency_ms, "trained": "full" if done is not None else "proxy",
                     "full_val_acc": done.val_acc if done is not None else None,
                     "full_run_id": done.run_id if done is not None else None})
    return rows


def slim_winner(config: Config, budget: Budget, device: torch.device, full: list[FullSummary], tracker: Tracker,
                parent_id: str) -> SlimReport | None:
    """``--slim``: the winner's lazy kernels removed and the rest fine-tuned, if time is left.
    A failure is tagged on the parent run (``slim_error``); the search's result stands."""
    winner = best_full(full)
    if not config.search.slim or winner is None or winner.learned_widths is None or budget.remaining_s() <= 0:
        return None
    from search.slim import slim_run

    try:
        return slim_run(config.store, winner.run_id, config.full, config.full.fine_tune_epochs, device=device,
                        deadline=time.monotonic() + budget.remaining_s())
    except Exception as error:
        tracker.set_tags(parent_id, {"slim_error": f"{type(error).__name__}: {error}"[:5000]})
        return None


def directions(config: Config) -> list[str]:
    return ["maximize", "minimize"] if config.search.objective == "pareto" else ["maximize"]


def check_limits_reachable(config: Config, data: TensorData) -> None:
    """A limit that even the narrowest profile of the space is over would reject every trial."""
    search = config.search
    if search.max_params is None and search.max_macs is None and search.max_latency_ms is None:
        return
    candidate = narrowest(config.space)
    reason = over_limit(measure_cost(candidate, data, config.model, search.latency_batch), search)
    if reason is not None:
        raise ConfigError(f"no width profile of the space fits the limits: the narrowest, {candidate.label}, "
                          f"has {reason}")


def shutdown_ray() -> str | None:
    """Stop this command's Ray (or disconnect from the cluster); a no-op when already done.

    Returns the error rather than raising it: a search shuts Ray down after its trials are recorded,
    and its parent run must still be closed with the result (``run_search`` tags the error on it).
    """
    import ray

    try:
        ray.shutdown()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def run_training(config: Config, widths: tuple[int, ...], on_event: EventHandler | None = None) -> TrainingResult:
    """Train one width profile fully (``search train``): a parent run and a child run per stage.

    Example:
        >>> import tempfile
        >>> from search.config import DataConfig, FullTrainConfig, ModelConfig, StoreConfig
        >>> widening = FullTrainConfig(mode="partial", stages=2, epochs_per_stage=1)
        >>> cfg = Config(model=ModelConfig(hidden=(8,)), full=widening,
        ...              data=DataConfig(dataset="synthetic", synthetic_train=64, synthetic_val=32,
        ...                              synthetic_image_size=8),
        ...              store=StoreConfig(path=Path(tempfile.mkdtemp())))
        >>> [stage.widths for stage in run_training(cfg.validate(), (4, 8)).result.stages]
        [(2, 4), (4, 8)]
    """
    emit = on_event or (lambda event: None)
    data = load_data(config)
    tracker = open_store(config.store)
    label = format_widths(widths)
    parent_id = tracker.start_run(
        f"train-{label}",
        params={**config.to_flat_dict(), "widths": label, "seed": config.search.seed, "frozen_layers": 0},
        tags={"phase": "full", "widths": label, "progressive": config.full.mode, "dataset": data.name},
    )
    with tracker.ending(parent_id):
        outcome = train_candidate(widths, data, config, tracker, parent_id, emit)
    return TrainingResult(outcome.result, outcome.analysis, parent_id, config.store.mlflow_uri)


@dataclass(frozen=True)
class TrainingResult:
    result: FullResult
    analysis: Analysis | None
    parent_run_id: str
    tracking_uri: str


def new_study_name(storage: optuna.storages.BaseStorage, wanted: str | None) -> str:
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if wanted is not None:
        if wanted in existing:
            raise ConfigError(f"study {wanted!r} already exists; add --resume to continue it")
        return wanted
    base = time.strftime("search-%Y%m%d-%H%M%S")
    name, suffix = base, 1
    while name in existing:
        suffix += 1
        name = f"{base}-{suffix}"
    return name


def fail_stale_trials(study: optuna.Study, tracker: Tracker, parent_id: str) -> None:
    """A killed search leaves its last trial RUNNING in Optuna and MLflow: mark it failed in both.

    A kill between the trial's MLflow run ending and Optuna's ``tell`` leaves that run FINISHED
    while Optuna still says RUNNING, so each stale trial's own run is failed whatever its status.
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    tracker.fail_running_children(parent_id)
    for trial in stale:
        if "mlflow_run_id" in trial.user_attrs:
            tracker.fail_run(trial.user_attrs["mlflow_run_id"])


def close_parent(tracker: Tracker, result: SearchResult, status: str) -> None:
    rows = [t.row() for t in sorted(result.trials, key=lambda t: t.number)]
    tracker.log_table(result.parent_run_id, rows, "results.csv")
    metrics: dict[str, Any] = {
        "trials_complete": result.count("COMPLETE"),
        "trials_pruned": result.count("PRUNED"),
        "trials_failed": result.count("FAIL"),
        "search_time_s": result.elapsed_s,
        "budget_overrun_s": result.overrun_s,
    }
    if result.proxy_phase_s is not None:
        metrics["proxy_phase_s"] = result.proxy_phase_s
    best = result.best
    if best is not None:
        metrics["best_score"] = best.score
        if result.scorer == "proxy":  # the score is a validation accuracy less its width penalty
            metrics["best_val_acc"] = best.accuracy
        tracker.set_tags(result.parent_run_id, {"best_widths": best.label, "best_trial": best.number})
        tracker.log_json(result.parent_run_id, best.row(), "best.json")
    if result.full:
        tracker.log_table(result.parent_run_id, [f.row() for f in result.full], "full_results.csv")
    winner = result.winner
    if winner is not None:
        metrics["winner_val_acc"] = winner.val_acc
        tracker.set_tags(result.parent_run_id, {"winner_widths": winner.label, "winner_run_id": winner.run_id,
                                                "winner_learned_widths": winner.learned_label or ""})
        tracker.log_json(result.parent_run_id, winner.row(), "winner.json")
    cost = result.trial_cost
    if cost is not None:
        metrics.update(cost.metrics())
    front = pareto_front(result.trials, result.cost) if result.objective == "pareto" else None
    if front is not None:
        metrics["front_size"] = len(front)
        tracker.log_table(result.parent_run_id, front_rows(front, result.full), "pareto.csv")
    metrics["trials_rejected"] = result.count("REJECTED")
    if result.slim is not None:
        slim = result.slim
        metrics.update(slim_params=slim.slim_params, slim_macs=slim.slim_macs, slim_latency_ms=slim.slim_latency_ms,
                       slim_removed_acc=slim.removed_acc, slim_tuned_acc=slim.tuned_acc)
        tracker.set_tags(result.parent_run_id, {"slim_widths": format_widths(result.slim.slim_widths),
                                                "slim_run_id": result.slim.run_id})
    tracker.log_metrics(result.parent_run_id, metrics)
    if result.trials:
        from search.pictures import search_comparison

        with tempfile.TemporaryDirectory() as folder:
            try:
                search_comparison(result.trials, result.full, result.scorer, Path(folder), front, result.cost)
            except Exception as error:  # a picture must not keep the run from closing
                tracker.set_tags(result.parent_run_id, {"comparison_error": f"{type(error).__name__}: {error}"})
            tracker.log_artifacts(result.parent_run_id, Path(folder), "comparison")
    tracker.end_run(result.parent_run_id, status)
