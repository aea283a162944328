"""Full training with its side effects: stage runs, a deadline, the analysis and its artifacts.

``train_candidate`` trains one width profile in full (``search.progressive.train_full``)
under an existing MLflow run, with a child run per stage (tag ``stage``), then measures its
kernels (``search.analysis``) and logs the statistics, the pictures and the weights there.
``search train`` calls it under its own parent run; ``run_full_phase`` calls it for the best
candidates of a search, in the part of the budget kept for them.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from models import ConvNet, format_widths
from models.kernels import DEFAULT_THRESHOLD
from search.analysis import (
    CHECKPOINT_FILE,
    DEFAULT_IMAGES,
    PICTURES_S,
    Analysis,
    analyse,
    load_checkpoint,
    save_checkpoint,
    write_analysis,
)
from search.budget import Budget, BudgetExhausted, next_epoch_overruns
from search.config import Config, ConfigError, StoreConfig, from_mapping
from search.data import TensorData
from search.events import CandidateEnded, CandidateStarted, EpochDone, EventHandler, StageStarted
from search.pareto import pareto_front, spanning
from search.progressive import FullResult, estimate_full_s, schedule, schedule_multiplier, train_full
from search.results import FullSummary, TrialSummary, rank_completed
from search.tracking import Tracker
from search.train import EpochMetrics

# A stage doubles every width: its epochs cost up to ~4x the last stage's (conv cost ~ width^2);
# small nets are dominated by fixed costs, so 3x is the planning guess.
STAGE_GROWTH = 3.0
# Of a candidate's time, the part training leaves for the kernel analysis (it may get more
# if training ends early; ``analyse`` sizes its ablations to what it gets).
ANALYSIS_SHARE = 0.3


@dataclass(frozen=True)
class CandidateOutcome:
    result: FullResult
    analysis: Analysis | None
    seconds: float  # training and analysis
    note: str | None  # why training stopped early or the analysis was skipped


def checkpoint_meta(config: Config, result: FullResult, data: TensorData) -> dict[str, Any]:
    """Plain values only (the checkpoint is read with weights_only=True): the data settings, the
    seed, the recipe's mode, the target widths, the accuracy and how inputs were normalised."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config.data).items()}
    return {"data": settings, "seed": config.search.seed, "mode": result.mode, "target": format_widths(result.widths),
            "val_acc": result.val_acc, **input_meta(data)}


def input_meta(data: TensorData) -> dict[str, Any]:
    """``input_mean`` and ``input_std`` per channel: the network reads (image - mean) / std."""
    if data.normalisation is None:
        return {}
    return {"input_mean": list(data.normalisation.mean), "input_std": list(data.normalisation.std)}


def train_candidate(
    widths: tuple[int, ...],
    data: TensorData,
    config: Config,
    tracker: Tracker,
    run_id: str,
    emit: EventHandler,
    deadline: float | None = None,
) -> CandidateOutcome:
    """Train ``widths`` fully under MLflow run ``run_id``, analyse, log; stop early to meet ``deadline``.

    ``deadline`` is a ``time.monotonic()`` value. Training keeps ``ANALYSIS_SHARE`` of the time
    to it for the analysis: no epoch starts that is expected to end past that point. The
    analysis then uses as many validation images as fit before the deadline, or is skipped.
    """
    start = time.monotonic()
    plan = schedule(widths, config.full)
    stage_runs: list[str] = []
    train_deadline = None if deadline is None else start + (deadline - start) * (1 - ANALYSIS_SHARE)

    def on_stage(stage: int, model: ConvNet) -> None:
        if stage_runs:
            tracker.end_run(stage_runs[-1])
        multiplier = schedule_multiplier(stage, config.full)
        stage_runs.append(
            tracker.start_run(
                f"stage-{stage}-x{multiplier:g}",
                parent_id=run_id,
                params={"widths": format_widths(model.widths), "frozen_layers": 0, "seed": config.search.seed,
                        "trained_params": model.trained_params(), "frozen_params": model.frozen_params()},
                tags={"phase": "full", "stage": f"{multiplier:g}", "progressive": config.full.mode},
            )
        )
        emit(StageStarted(stage, len(plan), model.widths, model.trained_params(), plan[stage][1]))

    def on_epoch(stage: int, metrics: EpochMetrics) -> None:
        tracker.log_metrics(stage_runs[stage], metrics.as_metrics(), step=metrics.epoch)
        emit(EpochDone(stage, metrics))
        if train_deadline is None:
            return
        stage_done = metrics.epoch == plan[stage][1]
        if stage_done and stage == len(plan) - 1:
            return
        growth = STAGE_GROWTH if stage_done else 1.0
        if next_epoch_overruns(metrics, train_deadline - time.monotonic(), growth):
            where = f"stage {stage + 1}/{len(plan)} epoch {metrics.epoch}"
            raise BudgetExhausted(f"stopped after {where}: the next epoch would overrun the budget")

    status = "FAILED"
    try:
        result, model = train_full(widths, data, config.model, config.full, config.search.seed, on_stage, on_epoch)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if stage_runs:
            tracker.end_run(stage_runs[-1], status)

    # The model kept is the best one measured (see train_full); where it was measured is logged.
    tracker.log_metrics(run_id, {"val_acc": result.val_acc, "train_time_s": result.seconds,
                                 "final_trained_params": result.kept_trained_params, "kept_stage": result.kept_stage,
                                 "kept_epoch": result.kept_epoch, "last_val_acc": result.last_val_acc})
    note = result.stopped
    tags: dict[str, Any] = {"state": "complete" if result.complete else "stopped",
                            "kept_widths": format_widths(model.widths)}
    if note:
        tags["stopped"] = note
    if model.widths != result.widths:
        kept = f"kept {format_widths(model.widths)} (stage {result.kept_stage + 1}): its best validation accuracy"
        note = f"{note}; {kept}" if note else kept
    log_model(tracker, run_id, model, checkpoint_meta(config, result, data))
    with tempfile.TemporaryDirectory() as folder:
        seconds = None if deadline is None else deadline - time.monotonic() - PICTURES_S
        analysis = analyse(model, data, config.full.analysis_images, config.full.lazy_threshold, seconds)
        if analysis is None:
            skipped = "kernel analysis skipped: budget spent"
            note = f"{note}; {skipped}" if note else skipped
            tags["analysis"] = "skipped"
        else:
            write_analysis(model, analysis, data, Path(folder) / "analysis")
            tracker.log_artifacts(run_id, Path(folder) / "analysis", "analysis")
            tracker.log_params(run_id, {"learned_widths": format_widths(analysis.learned_widths),
                                        "lazy_threshold": config.full.lazy_threshold})
            tracker.log_metrics(run_id, {"analysis_time_s": analysis.seconds, "analysis_images": analysis.images,
                                         "lazy_drop": analysis.lazy_drop})
    tracker.set_tags(run_id, tags)
    return CandidateOutcome(result, analysis, time.monotonic() - start, note)


def fitting(estimates: Sequence[float], seconds: float) -> int:
    """How many candidates, best first, are expected to finish training and analysis in
    ``seconds``, given their estimated training seconds.

    Example:
        >>> fitting([7.0, 7.0, 7.0], 35.0), fitting([7.0, 7.0, 7.0], 25.0), fitting([70.0], 10.0)
        (3, 2, 0)
    """
    needed, count = 0.0, 0
    for estimate in estimates:
        needed += estimate / (1 - ANALYSIS_SHARE)
        if needed > seconds:
            break
        count += 1
    return count


def planned_seconds(widths: tuple[int, ...], data: TensorData, config: Config) -> float:
    """``estimate_full_s``, or 0 when even a few steps fail: the candidate's training then meets
    the same error and records it as that candidate's failure, not the phase's."""
    try:
        return estimate_full_s(widths, data, config.model, config.full)
    except Exception:
        return 0.0


def share(estimates: Sequence[float], fit: int) -> float:
    """The first candidate's share of the time left, when it and the ``fit - 1`` after it are
    expected to fit it: in proportion to their estimates (all of it when none fits; an equal
    share without an estimate, whose steps failed).

    Example:
        >>> share([30.0, 10.0, 10.0], 3), share([30.0, 10.0, 10.0], 0), share([0.0, 10.0], 2)
        (0.6, 1.0, 0.5)
    """
    planned = sum(estimates[: max(fit, 1)])
    return estimates[0] / planned if estimates[0] > 0 else 1 / max(fit, 1)


def full_phase_candidates(config: Config, trials: Iterable[FrozenTrial]) -> list[TrialSummary]:
    """The candidates of the second phase, best first: the complete trials by score, or with
    ``--objective pareto`` the front members that span it (the most accurate, the cheapest
    close to it, the knee: ``search.pareto.spanning``)."""
    summaries = [TrialSummary.from_trial(t) for t in trials]
    if config.search.objective == "pareto":
        return spanning(pareto_front(summaries, config.search.cost), config.search.cost)
    return rank_completed(summaries)


class FullPhasePlan:
    """The expected training seconds of each profile (``planned_seconds``, measured once per
    profile on the phase's device), shared by the proxy phase, which asks how long the second
    phase needs for the best candidates so far (``needs_s``, ``kept_s``), and by the second
    phase itself, which plans with the same numbers."""

    def __init__(self, config: Config, data: TensorData) -> None:
        self.config, self.data = config, data
        self.seconds: dict[tuple[int, ...], float] = {}

    def estimate_s(self, widths: tuple[int, ...]) -> float:
        if widths not in self.seconds:
            self.seconds[widths] = planned_seconds(widths, self.data, self.config)
        return self.seconds[widths]

    def needs_s(self, trials: Iterable[FrozenTrial]) -> list[float]:
        """Seconds each of the best ``top_k`` candidates of ``trials`` is expected to need in the
        second phase, to the end of its training and its analysis share."""
        picked = pick_candidates(full_phase_candidates(self.config, trials), self.config.search.top_k)
        return [self.estimate_s(trial.widths) / (1 - ANALYSIS_SHARE) for trial in picked]

    def kept_s(self, trials: Iterable[FrozenTrial]) -> float:
        """What the proxy phase leaves the second: their needs, and the largest again as a margin
        for the trial that runs while the proxy phase ends, which may bring in a new candidate
        (without it, one of two 3-minute searches on digits trained 2 of its 3 in full); with
        ``--slim``, also the winner's fine-tuning epochs, at the largest candidate's mean epoch."""
        needs = self.needs_s(trials)
        kept = sum(needs) + max(needs, default=0.0)
        if self.config.search.slim and needs:
            full = self.config.full
            kept += max(needs) * (1 - ANALYSIS_SHARE) * full.fine_tune_epochs / full.total_epochs
        return kept


def pick_candidates(ranked: Sequence[TrialSummary], top_k: int) -> list[TrialSummary]:
    """The first ``top_k`` distinct profiles of ``ranked`` (the sampler may propose a profile
    twice: its best trial is trained once)."""
    picked: list[TrialSummary] = []
    for trial in ranked:
        if trial.widths not in {p.widths for p in picked}:
            picked.append(trial)
    return picked[:top_k]


def start_full_run(tracker: Tracker, config: Config, parent_id: str, study_name: str, rank: int,
                   trial: TrialSummary) -> str:
    """The MLflow run of one fully trained candidate, a child of the search's parent run."""
    return tracker.start_run(
        f"full-{rank}-{trial.label}",
        parent_id=parent_id,
        params={"widths": trial.label, "frozen_layers": 0, "seed": config.search.seed,
                "proxy_trial": trial.number, "proxy_score": trial.score, "progressive": config.full.mode},
        tags={"phase": "full", "study": study_name, "trial": trial.number, "progressive": config.full.mode,
              "rank": rank},
    )


def finished_summary(rank: int, trial: TrialSummary, outcome: CandidateOutcome, run_id: str) -> FullSummary:
    result = outcome.result
    return FullSummary(
        rank, trial.number, trial.widths, trial.score, "COMPLETE" if result.complete else "STOPPED",
        result.val_acc, outcome.analysis.learned_widths if outcome.analysis else None,
        result.kept_trained_params, outcome.seconds, run_id, outcome.note,
        tuple(stage.epoch_s for stage in result.stages), result.kept_widths, result.whole_seconds,
        outcome.analysis.images if outcome.analysis else None,
    )


def failed_summary(rank: int, trial: TrialSummary, error: str, seconds: float, tracker: Tracker,
                   run_id: str) -> FullSummary:
    """A candidate whose training raised (or whose worker was lost): its run FAILED with the error,
    and any stage run the lost worker left RUNNING failed too."""
    tracker.set_tags(run_id, {"state": "failed", "error": error[:5000]})
    tracker.fail_running_children(run_id)
    tracker.end_run(run_id, "FAILED")
    return FullSummary(rank, trial.number, trial.widths, trial.score, "FAIL", None, None, None, seconds, run_id,
                       error)


def run_full_phase(
    config: Config,
    budget: Budget,
    data: TensorData,
    tracker: Tracker,
    parent_id: str,
    study_name: str,
    ranked: list[TrialSummary],
    emit: EventHandler,
    plan: FullPhasePlan | None = None,
) -> list[FullSummary]:
    """Train the best ``config.search.top_k`` candidates in full, each a child run of the search.

    Before each candidate, the time left is shared among it and those after it that are
    expected to finish in it, in proportion to their estimates (``estimate_full_s`` times a
    few training steps of each): three candidates stopped half-way are worth less than one
    trained to the end of its schedule. The best always trains; a later one only if it is
    expected to finish, so time an earlier one did not use passes on. A candidate that raises
    is recorded as failed; the phase goes on. ``plan`` holds the estimates the proxy phase
    already measured.
    """
    picked = pick_candidates(ranked, config.search.top_k)
    plan = plan or FullPhasePlan(config, data)
    estimates = [plan.estimate_s(trial.widths) for trial in picked]
    summaries: list[FullSummary] = []
    for index, trial in enumerate(picked):
        left = budget.remaining_s()
        fit = fitting(estimates[index:], left)  # this one and those after it that fit what is left
        if left <= 0 or (index > 0 and fit == 0):
            fitted = f"{index} of the top {len(picked)}: the budget fit no more"
            tracker.set_tags(parent_id, {"full_candidates": fitted})
            break
        rank = index + 1
        emit(CandidateStarted(rank, index + max(fit, 1), trial.widths, trial.score, len(picked), config.full.mode))
        run_id = start_full_run(tracker, config, parent_id, study_name, rank, trial)
        started = time.monotonic()
        try:
            outcome = train_candidate(trial.widths, data, config, tracker, run_id, emit,
                                      deadline=started + share(estimates[index:], fit) * left)
        except Exception as failure:  # one candidate's failure must not lose the others
            summary = failed_summary(rank, trial, f"{type(failure).__name__}: {failure}",
                                     time.monotonic() - started, tracker, run_id)
        except BaseException:
            tracker.end_run(run_id, "KILLED")
            raise
        else:
            tracker.end_run(run_id, "FINISHED")
            summary = finished_summary(rank, trial, outcome, run_id)
        summaries.append(summary)
        emit(CandidateEnded(summary))
    return summaries


@dataclass(frozen=True)
class LoggedModel:
    """A full-training run's model as logged, with the data it was trained on."""

    tracker: Tracker
    run: Any  # mlflow.entities.Run
    model: ConvNet
    meta: dict[str, Any]
    data: TensorData


def log_model(tracker: Tracker, run_id: str, model: ConvNet, meta: dict[str, Any]) -> None:
    """Log ``model`` (weights, architecture, ``meta``) as ``model/model.pt`` of ``run_id``: what
    ``load_logged_model`` and the commands that take a RUN_ID load."""
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = save_checkpoint(model, Path(folder) / CHECKPOINT_FILE, meta)
        tracker.log_artifacts(run_id, checkpoint.parent, "model")


def load_logged_model(store: StoreConfig, run_id: str, data_dir: Path | None = None) -> LoggedModel:
    """The model logged by ``run_id`` (``model/model.pt``) and its dataset, loaded from the data
    settings stored in the checkpoint (``data_dir`` overrides where a torchvision dataset lives)."""
    from mlflow.exceptions import MlflowException

    from search import data as datasets

    tracker = Tracker(store.mlflow_uri, store.artifact_root)
    try:
        run = tracker.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"run {run_id!r} is not in the tracking store {store.mlflow_uri}") from None
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = tracker.download(run_id, f"model/{CHECKPOINT_FILE}", Path(folder))
        except (MlflowException, OSError):
            raise ConfigError(f"run {run_id!r} has no logged model (model/{CHECKPOINT_FILE}); full-training runs "
                              "(search train, or the full-* runs of search run) have one") from None
        model, meta = load_checkpoint(path)
    data_settings = dict(meta["data"])
    if data_dir is not None:
        data_settings["data_dir"] = str(data_dir)
    config = from_mapping({"data": data_settings}).validate()
    data = datasets.load(config.data, seed=int(meta["seed"]))
    return LoggedModel(tracker, run, model, meta, data)


def inspect_run(
    store: StoreConfig,
    run_id: str,
    out: Path,
    data_dir: Path | None = None,
    images: int | None = None,
    threshold: float | None = None,
) -> Analysis:
    """Statistics and pictures of the model logged by ``run_id``, written to ``out``."""
    logged = load_logged_model(store, run_id, data_dir)
    if threshold is None:
        threshold = float(logged.run.data.params.get("lazy_threshold", DEFAULT_THRESHOLD))
    analysis = analyse(logged.model, logged.data, images or DEFAULT_IMAGES, threshold)
    assert analysis is not None  # no time limit
    write_analysis(logged.model, analysis, logged.data, out)
    return analysis


@dataclass(frozen=True)
class Export:
    path: Path
    widths: tuple[int, ...]
    val_acc: float  # the written model, evaluated on the run's validation split now
    logged_val_acc: float | None  # what was measured when the run logged it


def export_model(store: StoreConfig, run_id: str, out: Path, data_dir: Path | None = None) -> Export:
    """Write the model logged by ``run_id`` to ``out`` (``search.load_checkpoint`` reads it), its
    metadata completed with the input normalisation, after checking it on the run's validation split."""
    from search.train import evaluate

    if out.exists():
        raise ConfigError(f"{str(out)!r} exists; choose another --out or remove it")
    logged = load_logged_model(store, run_id, data_dir)
    _, val_acc = evaluate(logged.model, logged.data.x_val, logged.data.y_val, batch_size=512)
    meta = {**input_meta(logged.data), **logged.meta}  # runs logged before the normalisation was recorded
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(logged.model, out, meta)
    except OSError as error:
        raise ConfigError(f"cannot write {str(out)!r}: {error.strerror or error}") from None
    logged_acc = logged.meta.get("val_acc")  # this model's: a slimmed or simplified run's after fine-tuning
    return Export(out, logged.model.widths, val_acc, None if logged_acc is None else float(logged_acc))
