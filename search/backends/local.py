"""The local backend: trials one after another in this process, Optuna's ask-and-tell.

Each trial is ``search.trial.run_trial`` (the Ray backend runs the same function on its
workers); here its ``on_epoch`` hook feeds Optuna's pruner (or the Pareto dominance rule) and
enforces the budget, and the outcome is told to Optuna.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from search.budget import (
    Budget,
    BudgetExhausted,
    current_budget,
    expected_trial_s,
    has_completed,
    lengthened,
    next_epoch_overruns,
    next_trial,
)
from search.config import Config
from search.cost import Cost
from search.data import TensorData
from search.events import EpochDone, EventHandler, TrialStarted
from search.full import FullPhasePlan
from search.pareto import completed_curves, dominated_at
from search.space import suggest_candidate
from search.tracking import Tracker
from search.train import EpochMetrics
from search.trial import (
    MAX_UNTRAINED_IN_A_ROW,
    end_trial,
    reuse_earlier_score,
    run_trial,
    untrained,
    untrained_in_a_row,
)


@dataclass(frozen=True)
class LocalTrials:
    """Everything a trial needs from its search; ``run`` runs them until time or the cap."""

    study: optuna.Study
    config: Config
    data: TensorData  # on the trials' device
    tracker: Tracker
    parent_id: str
    budget: Budget  # the proxy phase's share
    emit: EventHandler
    whole_budget: Budget | None = None  # the command's: what a first trial may use if the share is gone
    # The second phase's estimates: the share is lengthened into the time it will not need.
    full_plan: FullPhasePlan | None = None

    def run(self) -> None:
        """Run trials until the trial cap is met or the next one could not finish in time.

        Until a trial has completed, the whole budget counts, not only the proxy phase's
        share, and a trial runs to its end whatever the budget; if the budget is spent before
        any trial completed (slow start-up, a budget of seconds), one more trial is trained past
        it: a search that ends with no result is worth nothing (``search.budget.has_completed``).
        """
        overtime = False  # a trial was trained past the budget in this run
        while True:
            trials = self.study.get_trials(deepcopy=False)
            # A candidate rejected (over a limit) or already scored is not trained: it does not count.
            finished = sum(t.state.is_finished() and not untrained(t) for t in trials)
            if self.config.search.trials is not None and finished >= self.config.search.trials:
                return
            if untrained_in_a_row(trials) >= MAX_UNTRAINED_IN_A_ROW:
                return
            decision = next_trial(trials, self.current_budget(), overtime)
            if decision in ("stop", "wait"):  # one trial at a time: "wait" only for a stale RUNNING trial
                return
            trained = run_one(self, finish=not has_completed(trials))
            overtime = overtime or (decision == "overtime" and trained)

    def current_budget(self) -> Budget:
        """The proxy phase's share once a trial has completed (the whole budget before). Once
        the share is spent, it is lengthened to leave only what the second phase is expected to
        need for the best candidates so far, with a margin (``FullPhasePlan.kept_s``,
        ``search.budget.lengthened``): a search whose best candidates train in seconds goes on
        scoring instead of ending early."""
        budget = current_budget(self.study, self.budget, self.whole_budget)
        if self.full_plan is None or self.whole_budget is None or budget is not self.budget:
            return budget
        trials = self.study.get_trials(deepcopy=False)
        if budget.remaining_s() > expected_trial_s(trials):
            return budget  # not spent yet: nothing to measure
        return lengthened(budget, self.whole_budget, self.full_plan.kept_s(trials))


def run_one(ctx: LocalTrials, finish: bool = False) -> bool:
    """Ask, train and tell one trial; whether it was trained (not rejected, not a repeat).
    ``finish``: the budget does not stop it (no trial has completed yet)."""
    study, config, tracker, budget, emit = ctx.study, ctx.config, ctx.tracker, ctx.current_budget(), ctx.emit
    trial = study.ask()
    candidate = suggest_candidate(trial, config.space)
    if reuse_earlier_score(study, trial, candidate):
        end_trial(study, trial.number, emit, None)
        return False

    epochs = config.proxy.epochs
    pareto = len(study.directions) > 1
    curve: list[float] = []
    cost_value = 0.0

    def started(identity: dict[str, Any], cost: Cost) -> None:
        nonlocal cost_value
        for key, value in identity.items():
            trial.set_user_attr(key, value)
        cost_value = cost.value(config.search.cost)
        emit(TrialStarted(trial.number, candidate))

    def report(metrics: EpochMetrics, score: float) -> None:
        emit(EpochDone(trial.number, metrics))
        if pareto:  # Optuna's pruners take one objective: prune by dominance instead (search/pareto.py)
            curve.append(score)
            trial.set_user_attr("curve", curve)
        else:
            trial.report(score, metrics.epoch)
        if metrics.epoch < epochs:
            if pareto and config.search.pruner != "none" and dominated_at(
                    metrics.epoch, score, cost_value,
                    completed_curves(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))):
                raise optuna.TrialPruned(f"pruned after epoch {metrics.epoch}: dominated")
            if not pareto and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {metrics.epoch}")
            if not finish and next_epoch_overruns(metrics, budget.remaining_s()) and next_epoch_overruns(
                    metrics, ctx.current_budget().remaining_s()):  # the share may have been lengthened since
                raise BudgetExhausted(f"stopped after epoch {metrics.epoch}: budget spent")

    try:
        outcome = run_trial(trial.number, candidate, ctx.data, config, tracker, ctx.parent_id, study.study_name,
                            on_epoch=report, on_start=started)
    except BaseException:  # Ctrl-C: the trial is failed (its run was closed KILLED), then stop
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        raise
    trial.set_user_attr("seconds", outcome.seconds)
    if outcome.epoch_s is not None:
        trial.set_user_attr("epoch_s", outcome.epoch_s)
    if outcome.state == "complete":
        assert outcome.result is not None and outcome.score is not None
        trial.set_user_attr("cached", outcome.result.cached)
        score = outcome.score
        study.tell(trial, [score, outcome.cost.value(config.search.cost)] if pareto else score)
    elif outcome.state == "failed":
        trial.set_user_attr("error", outcome.note)
        study.tell(trial, state=TrialState.FAIL)
    else:  # pruned, or rejected: over a limit, never trained
        trial.set_user_attr("rejected" if outcome.state == "rejected" else "stopped", outcome.note)
        study.tell(trial, state=TrialState.PRUNED)
    end_trial(study, trial.number, emit, outcome.note if outcome.state == "failed" else None)
    return outcome.state != "rejected"

