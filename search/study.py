"""The pipeline of one search: store, data, Optuna study, MLflow parent run, trials, result.

``run_search`` is what ``search run`` calls. It owns the side effects at the top (the
store folder, the study's SQLite storage, the MLflow parent run) and hands a backend the
trial function, which knows nothing of Optuna, MLflow or the backend that calls it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from models import format_widths
from search import data as datasets
from search.config import Config, ConfigError, SpaceConfig, from_mapping
from search.progressive import FullResult
from search.proxy import Candidate, ProxyResult, score_candidate
from search.tracking import Tracker
from search.train import EpochMetrics, StopTraining

if TYPE_CHECKING:
    from search.analysis import Analysis

# Sections of the config that define a study; a resumed search takes them from the store.
STUDY_SECTIONS = ("space", "model", "proxy", "data")
TOP_CANDIDATES = 5


# -- budget -------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Wall-clock budget of one command, counted from ``started_at`` (time.monotonic())."""

    total_s: float
    started_at: float

    @property
    def reserve_s(self) -> float:
        # Kept back for closing the study: results table, artifacts, run status.
        return min(5.0, 0.03 * self.total_s)

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at

    def remaining_s(self) -> float:
        """Seconds left for work."""
        return self.total_s - self.reserve_s - self.elapsed_s()

    def first(self, fraction: float) -> Budget:
        """The budget of a first phase that ends after ``fraction`` of this one.

        Example:
            >>> Budget(100.0, 0.0).first(0.6).total_s
            60.0
        """
        return Budget(self.total_s * fraction, self.started_at)


class BudgetExhausted(StopTraining):
    """Raised from a trial's epoch callback when its next epoch would overrun the budget."""


def next_epoch_overruns(metrics: EpochMetrics, seconds_left: float, growth: float = 1.0) -> bool:
    """Whether an epoch like the last one (training and evaluation, times ``growth``) would end
    after ``seconds_left``: the one budget test of every phase and backend."""
    return (metrics.epoch_time_s + metrics.eval_time_s) * growth > seconds_left


def expected_trial_s(trials: list[FrozenTrial]) -> float:
    """The longest finished trial so far: a new trial is only started if this much is left."""
    durations = [
        t.user_attrs["seconds"] for t in trials if t.state == TrialState.COMPLETE and "seconds" in t.user_attrs
    ]
    return max(durations, default=0.0)


# -- search space -------------------------------------------------------------------


def suggest_candidate(trial: optuna.Trial, space: SpaceConfig) -> Candidate:
    """Ask Optuna for one candidate; width ranges are ordinal (suggest_int with a step)."""
    widths = []
    for layer in range(space.layers):
        name = f"width_{layer + 1}"
        if space.categorical:
            widths.append(int(trial.suggest_categorical(name, list(space.choices(layer)))))
        else:
            widths.append(trial.suggest_int(name, space.width_min, space.width_max, step=space.width_step))
    if len(space.frozen_layers) == 1:
        frozen = space.frozen_layers[0]
    else:
        frozen = int(trial.suggest_categorical("frozen_layers", list(space.frozen_layers)))
    return Candidate(tuple(widths), frozen)


def starting_params(space: SpaceConfig) -> dict[str, Any]:
    """The first trial of a new study: the middle width of each layer's choices and the fewest
    frozen layers offered. A cheap, sensible profile, so a search of any budget has a result.

    Example:
        >>> starting_params(SpaceConfig(layers=2))
        {'width_1': 16, 'width_2': 16}
    """
    params: dict[str, Any] = {}
    for layer in range(space.layers):
        choices = space.choices(layer)
        params[f"width_{layer + 1}"] = choices[(len(choices) - 1) // 2]
    if len(space.frozen_layers) > 1:
        params["frozen_layers"] = min(space.frozen_layers)
    return params


def trial_identity(candidate: Candidate, trained_params: int, frozen_params: int) -> dict[str, Any]:
    """What every backend records of a trial, as MLflow params (with the seed) and Optuna user attributes."""
    return {"widths": candidate.label, "frozen_layers": candidate.frozen_layers, "trained_params": trained_params,
            "frozen_params": frozen_params}


# -- results ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialSummary:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING
    widths: str
    frozen_layers: int
    score: float | None
    trained_params: int | None
    frozen_params: int | None
    seconds: float | None
    run_id: str | None

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialSummary:
        attrs = trial.user_attrs
        return cls(
            number=trial.number,
            state=trial.state.name,
            widths=attrs.get("widths", ""),
            frozen_layers=int(attrs.get("frozen_layers", -1)),
            score=trial.value if trial.state == TrialState.COMPLETE else None,
            trained_params=attrs.get("trained_params"),
            frozen_params=attrs.get("frozen_params"),
            seconds=attrs.get("seconds"),
            run_id=attrs.get("mlflow_run_id"),
        )


def rank_completed(trials: Iterable[TrialSummary]) -> list[TrialSummary]:
    """Complete trials, best first: the higher score, then (ties) the fewer trained parameters,
    then the earlier trial. The one ordering of the printed table, the parent run's best and
    the candidates of the second phase."""
    done = [t for t in trials if t.state == "COMPLETE"]
    return sorted(done, key=lambda t: (-(t.score or 0.0), t.trained_params or 0, t.number))


@dataclass(frozen=True)
class FullSummary:
    """One candidate of the second phase: trained in full, then analysed."""

    rank: int  # by proxy score, 1-based
    trial: int | None
    widths: str
    proxy_score: float | None
    state: str  # COMPLETE, STOPPED (budget: fewer stages or epochs), FAIL
    val_acc: float | None
    learned_widths: str | None
    trained_params: int | None
    seconds: float
    run_id: str
    note: str | None = None


@dataclass(frozen=True)
class SearchResult:
    study_name: str
    parent_run_id: str
    store: Path
    tracking_uri: str
    trials: tuple[TrialSummary, ...]
    elapsed_s: float
    full: tuple[FullSummary, ...] = ()
    scorer: str = "proxy"

    @property
    def winner(self) -> FullSummary | None:
        """The best full accuracy, preferring candidates whose training completed."""
        trained = [f for f in self.full if f.val_acc is not None]
        return max(trained, key=lambda f: (f.state == "COMPLETE", f.val_acc, -f.rank), default=None)

    def completed(self) -> list[TrialSummary]:
        return rank_completed(self.trials)

    @property
    def best(self) -> TrialSummary | None:
        done = self.completed()
        return done[0] if done else None

    def count(self, state: str) -> int:
        return sum(t.state == state for t in self.trials)


# -- progress events (the CLI draws them; the pipeline only emits) -------------------


@dataclass(frozen=True)
class SearchStarted:
    study_name: str
    resumed_trials: int
    budget_s: float
    epochs: int
    device: str
    dataset: str


@dataclass(frozen=True)
class TrialStarted:
    number: int
    candidate: Candidate


@dataclass(frozen=True)
class EpochDone:
    number: int
    metrics: EpochMetrics


@dataclass(frozen=True)
class TrialEnded:
    summary: TrialSummary
    best: TrialSummary | None
    error: str | None = None


@dataclass(frozen=True)
class StageStarted:
    stage: int  # 0-based
    stages: int
    widths: tuple[int, ...]
    trained_params: int
    epochs: int


@dataclass(frozen=True)
class CandidateStarted:
    rank: int  # 1-based, by proxy score
    of: int
    widths: str
    proxy_score: float | None


@dataclass(frozen=True)
class CandidateEnded:
    summary: FullSummary


Event = SearchStarted | TrialStarted | EpochDone | TrialEnded | StageStarted | CandidateStarted | CandidateEnded
EventHandler = Callable[[Event], None]


# -- the pipeline -------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available here")
    return torch.device(name)


def config_to_json(config: Config) -> str:
    sections = {name: dataclasses.asdict(getattr(config, name)) for name in STUDY_SECTIONS}
    return json.dumps(sections, default=str)


def study_config(config: Config, stored_json: str) -> Config:
    """The resumed study's own space/model/proxy/data over this command's other settings."""
    return from_mapping(json.loads(stored_json), base=config)


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
        >>> from search.config import DataConfig, SearchConfig, StoreConfig, ProxyConfig, ModelConfig
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
    device = resolve_device(config.search.device)
    study_name = None
    if config.store.resume:
        config, study_name = prepare_resume(config)
    data = datasets.load(config.data, seed=config.search.seed).to(device)
    if config.search.backend == "ray":
        from search.backends.ray_tune import check_tracking_reachable, connect

        connect(config)
        check_tracking_reachable(config)

    # Past this point the command writes: the store, the study, the MLflow runs.
    config.store.path.mkdir(parents=True, exist_ok=True)
    storage = open_storage(config)
    tracker = Tracker(config.store.mlflow_uri, config.store.artifact_root)
    if study_name is None:
        study_name = new_study_name(storage, config.store.study_name)
        study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize")
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
        parent_id = study.user_attrs["mlflow_parent_run_id"]
        fail_stale_trials(study, tracker, parent_id)
        tracker.reopen_run(parent_id)

    previous = len(study.trials)
    if previous == 0:
        study.enqueue_trial(starting_params(config.space))
    # Re-seed on resume so the sampler's random start does not replay the first run's picks.
    study.sampler = optuna.samplers.TPESampler(seed=config.search.seed + previous)
    study.pruner = make_pruner(config.search.pruner, config.proxy.epochs)
    emit(SearchStarted(study_name, previous, budget.total_s, config.proxy.epochs, str(device), data.name))

    def trial_fn(candidate: Candidate, report: Callable[[EpochMetrics], None]) -> ProxyResult:
        if config.search.scorer != "proxy":
            from search.scorers import ScorerSettings, zero_cost_trial

            settings = ScorerSettings(config.model, config.proxy, config.search.seed)
            return zero_cost_trial(config.search.scorer, candidate, data, settings)
        return score_candidate(candidate, data, config.model, config.proxy, config.search.seed, on_epoch=report)

    from search.backends.local import LocalTrials
    from search.full import run_full_phase

    # The proxy phase ends where the share kept for full training begins.
    proxy_budget = budget.first(1 - config.search.full_fraction) if config.search.full_phase else budget
    status = "FINISHED"
    full: list[FullSummary] = []
    try:
        if config.search.backend == "ray":
            from search.backends.ray_tune import RayTrials

            RayTrials(study, config, data, tracker, parent_id, proxy_budget, emit).run()
        else:
            LocalTrials(
                study,
                config,
                trial_fn,
                tracker,
                parent_id,
                proxy_budget,
                emit,
                param_counts=lambda candidate: param_counts(candidate, data, config),
                whole_budget=budget,
            ).run()
        if config.search.full_phase:
            ranked = rank_completed(TrialSummary.from_trial(t) for t in study.trials)
            full = run_full_phase(config, budget, data, tracker, parent_id, study_name, ranked, emit)
    except BaseException:
        status = "KILLED"
        raise
    finally:
        result = SearchResult(
            study_name=study_name,
            parent_run_id=parent_id,
            store=config.store.path,
            tracking_uri=config.store.mlflow_uri,
            trials=tuple(TrialSummary.from_trial(t) for t in study.trials),
            elapsed_s=budget.elapsed_s(),
            full=tuple(full),
            scorer=config.search.scorer,
        )
        close_parent(tracker, result, status)
        if config.search.backend == "ray":
            import ray

            ray.shutdown()
    return result


def run_training(config: Config, widths: tuple[int, ...], on_event: EventHandler | None = None) -> TrainingResult:
    """Train one width profile fully (``search train``): a parent run and a child run per stage.

    Example:
        >>> import tempfile
        >>> from search.config import DataConfig, FullTrainConfig, ModelConfig, StoreConfig
        >>> cfg = Config(model=ModelConfig(hidden=(8,)), full=FullTrainConfig(stages=2, epochs_per_stage=1),
        ...              data=DataConfig(dataset="synthetic", synthetic_train=64, synthetic_val=32,
        ...                              synthetic_image_size=8),
        ...              store=StoreConfig(path=Path(tempfile.mkdtemp())))
        >>> [stage.widths for stage in run_training(cfg.validate(), (4, 8)).result.stages]
        [(2, 4), (4, 8)]
    """
    from search.full import train_candidate

    emit = on_event or (lambda event: None)
    device = resolve_device(config.search.device)
    data = datasets.load(config.data, seed=config.search.seed).to(device)
    config.store.path.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(config.store.mlflow_uri, config.store.artifact_root)
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


def param_counts(candidate: Candidate, data: datasets.TensorData, config: Config) -> tuple[int, int]:
    from search.proxy import build_model

    model = build_model(candidate, replace(data, x_train=data.x_train[:1].cpu()), config.model, seed=0)
    return model.trained_params(), model.frozen_params()


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
    """A killed search leaves its last trial RUNNING in Optuna and MLflow: mark it failed."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    tracker.fail_running_children(parent_id)


def close_parent(tracker: Tracker, result: SearchResult, status: str) -> None:
    rows = [dataclasses.asdict(t) for t in sorted(result.trials, key=lambda t: t.number)]
    tracker.log_table(result.parent_run_id, rows, "results.csv")
    metrics: dict[str, Any] = {
        "trials_complete": result.count("COMPLETE"),
        "trials_pruned": result.count("PRUNED"),
        "trials_failed": result.count("FAIL"),
        "search_time_s": result.elapsed_s,
    }
    best = result.best
    if best is not None:
        metrics["best_score"] = best.score
        if result.scorer == "proxy":  # the score is a validation accuracy
            metrics["best_val_acc"] = best.score
        tracker.set_tags(result.parent_run_id, {"best_widths": best.widths, "best_trial": best.number})
        tracker.log_json(result.parent_run_id, dataclasses.asdict(best), "best.json")
    if result.full:
        tracker.log_table(result.parent_run_id, [dataclasses.asdict(f) for f in result.full], "full_results.csv")
    winner = result.winner
    if winner is not None:
        metrics["winner_val_acc"] = winner.val_acc
        tracker.set_tags(result.parent_run_id, {"winner_widths": winner.widths, "winner_run_id": winner.run_id,
                                                "winner_learned_widths": winner.learned_widths or ""})
        tracker.log_json(result.parent_run_id, dataclasses.asdict(winner), "winner.json")
    tracker.log_metrics(result.parent_run_id, metrics)
    tracker.end_run(result.parent_run_id, status)
