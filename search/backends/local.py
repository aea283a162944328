"""The local backend: trials one after another in this process, Optuna's ask-and-tell.

Each trial gets a child MLflow run. The trial function only sees a candidate and a
``report`` callback; here ``report`` logs the epoch, feeds Optuna's pruner and enforces
the budget, so the same trial function can run under another backend unchanged.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from search.budget import Budget, BudgetExhausted, current_budget, expected_trial_s, next_epoch_overruns
from search.config import Config
from search.cost import Cost, over_limit
from search.events import EpochDone, EventHandler, TrialEnded, TrialStarted
from search.pareto import completed_curves, dominated_at
from search.proxy import Candidate, ProxyResult
from search.results import TrialSummary, rank_completed
from search.space import suggest_candidate, trial_identity
from search.tracking import Tracker
from search.train import EpochMetrics

TrialFunction = Callable[[Candidate, Callable[[EpochMetrics], None]], ProxyResult]
MAX_UNTRAINED_IN_A_ROW = 100  # the sampler keeps proposing candidates over the limits or scored: stop asking


@dataclass(frozen=True)
class LocalTrials:
    """Everything a trial needs from its search; ``run`` runs them until time or the cap."""

    study: optuna.Study
    config: Config
    trial_fn: TrialFunction
    tracker: Tracker
    parent_id: str
    budget: Budget  # the proxy phase's share
    emit: EventHandler
    measure: Callable[[Candidate], Cost]  # the candidate's cost, before any training
    whole_budget: Budget | None = None  # the command's: what a first trial may use if the share is gone

    def run(self) -> None:
        """Run trials until the trial cap is met or the next one could not finish in time.

        Until a trial has completed, the whole budget counts, not only the proxy phase's
        share: a search that ends with no result is worth nothing (slow start-up, short budget).
        """
        while True:
            trials = self.study.get_trials(deepcopy=False)
            # A candidate rejected (over a limit) or already scored is not trained: it does not count.
            finished = sum(t.state.is_finished() and not untrained(t) for t in trials)
            if self.config.search.trials is not None and finished >= self.config.search.trials:
                return
            if untrained_in_a_row(trials) >= MAX_UNTRAINED_IN_A_ROW:
                return
            if self.current_budget().remaining_s() <= expected_trial_s(trials):  # 0 before a completed trial
                return
            run_one(self)

    def current_budget(self) -> Budget:
        """The proxy phase's share once a trial has completed; the whole budget before."""
        return current_budget(self.study, self.budget, self.whole_budget)


def untrained(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial that trained nothing: its candidate was over a limit, or already scored."""
    return "rejected" in trial.user_attrs or "same_as" in trial.user_attrs


def untrained_in_a_row(trials: list[optuna.trial.FrozenTrial]) -> int:
    """How many of the latest trials trained nothing, one after another."""
    count = 0
    for trial in reversed(trials):
        if not untrained(trial):
            break
        count += 1
    return count


def scored_before(study: optuna.Study, candidate: Candidate) -> optuna.trial.FrozenTrial | None:
    """The first complete trial of the same candidate: the proxy is a function of (seed, candidate)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get("widths") == candidate.label and \
                trial.user_attrs.get("frozen_layers") == candidate.frozen_layers and "same_as" not in trial.user_attrs:
            return trial
    return None


def run_one(ctx: LocalTrials) -> None:
    study, config, tracker, budget, emit = ctx.study, ctx.config, ctx.tracker, ctx.current_budget(), ctx.emit
    trial = study.ask()
    candidate = suggest_candidate(trial, config.space)
    earlier = scored_before(study, candidate)
    if earlier is not None:  # the sampler proposed it again: its score is known, training it again is waste
        for key, value in earlier.user_attrs.items():
            if key not in ("mlflow_run_id", "seconds", "epoch_s", "cached"):
                trial.set_user_attr(key, value)
        trial.set_user_attr("same_as", earlier.number)
        trial.set_user_attr("seconds", 0.0)
        study.tell(trial, earlier.values if len(earlier.values) > 1 else earlier.values[0])
        end_trial(study, trial.number, emit, None)
        return
    cost = ctx.measure(candidate)
    identity = trial_identity(candidate, cost)
    rejected = over_limit(cost, config.search)
    run_id = tracker.start_run(
        f"trial-{trial.number}",
        parent_id=ctx.parent_id,
        params={**identity, "seed": config.search.seed},
        tags={"phase": "proxy", "study": study.study_name, "trial": trial.number},
    )
    tracker.log_metrics(run_id, cost_metrics(cost))
    for key, value in {**identity, "mlflow_run_id": run_id}.items():
        trial.set_user_attr(key, value)
    emit(TrialStarted(trial.number, candidate))
    if rejected is not None:  # never trained: no epoch, no score
        trial.set_user_attr("rejected", rejected)
        trial.set_user_attr("seconds", 0.0)
        study.tell(trial, state=TrialState.PRUNED)
        tracker.set_tags(run_id, {"state": "rejected", "rejected": rejected})
        tracker.end_run(run_id, "FINISHED")
        end_trial(study, trial.number, emit, None)
        return

    epochs = config.proxy.epochs
    epoch_times: list[float] = []
    pareto = len(study.directions) > 1
    curve: list[float] = []

    def report(metrics: EpochMetrics) -> None:
        tracker.log_metrics(run_id, metrics.as_metrics(), step=metrics.epoch)
        epoch_times.append(metrics.epoch_time_s)
        trial.set_user_attr("epoch_s", sum(epoch_times) / len(epoch_times))
        emit(EpochDone(trial.number, metrics))
        if pareto:  # Optuna's pruners take one objective: prune by dominance instead (search/pareto.py)
            curve.append(metrics.val_acc)
            trial.set_user_attr("curve", curve)
        else:
            trial.report(metrics.val_acc, metrics.epoch)
        if metrics.epoch < epochs:
            if pareto and config.search.pruner != "none" and dominated_at(
                    metrics.epoch, metrics.val_acc, cost.value(config.search.cost),
                    completed_curves(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))):
                raise optuna.TrialPruned(f"pruned after epoch {metrics.epoch}: dominated")
            if not pareto and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {metrics.epoch}")
            if next_epoch_overruns(metrics, budget.remaining_s()):
                raise BudgetExhausted(f"stopped after epoch {metrics.epoch}: budget spent")

    start = time.perf_counter()
    error = None
    try:
        result = ctx.trial_fn(candidate, report)
    except (optuna.TrialPruned, BudgetExhausted) as stop:
        trial.set_user_attr("seconds", time.perf_counter() - start)
        trial.set_user_attr("stopped", str(stop))
        study.tell(trial, state=TrialState.PRUNED)
        tracker.set_tags(run_id, {"state": "pruned", "stopped": str(stop)})
        tracker.end_run(run_id, "FINISHED")
    except Exception as failure:  # a trial's bug or divergence must not end the search
        error = f"{type(failure).__name__}: {failure}"
        trial.set_user_attr("seconds", time.perf_counter() - start)
        trial.set_user_attr("error", error)
        study.tell(trial, state=TrialState.FAIL)
        tracker.set_tags(run_id, {"state": "failed", "error": error[:5000]})
        tracker.log_text(run_id, traceback.format_exc(), "error.txt")
        tracker.end_run(run_id, "FAILED")
    except BaseException:  # Ctrl-C: record the trial as failed and its run as killed, then stop
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        tracker.end_run(run_id, "KILLED")
        raise
    else:
        trial.set_user_attr("seconds", result.seconds)
        trial.set_user_attr("cached", result.cached)
        study.tell(trial, [result.score, cost.value(config.search.cost)] if pareto else result.score)
        tracker.log_metrics(run_id, result.as_metrics())
        tracker.set_tags(run_id, {"state": "complete", "feature_cache": "memory" if result.cached else "none"})
        tracker.end_run(run_id, "FINISHED")
    end_trial(study, trial.number, emit, error)


def cost_metrics(cost: Cost) -> dict[str, float]:
    """The cost as MLflow metrics too, so the UI charts and sorts trials by it."""
    return {"total_params": cost.total_params, "macs": cost.macs, "latency_ms": cost.latency_ms}


def end_trial(study: optuna.Study, number: int, emit: EventHandler, error: str | None) -> None:
    trials = study.get_trials(deepcopy=False)
    summary = next(TrialSummary.from_trial(t) for t in trials if t.number == number)
    ranked = rank_completed(TrialSummary.from_trial(t) for t in trials)
    emit(TrialEnded(summary, ranked[0] if ranked else None, error))

