"""The wall-clock budget of a command, and the one test every phase and backend applies to it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.train import EpochMetrics, StopTraining


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


def has_completed(trials: list[FrozenTrial]) -> bool:
    """Whether the search has an answer: a completed trial (all its proxy epochs, or a zero-cost score).

    Until it has, a trial runs to its end whatever the budget says, and one trial starts even
    when the budget is already spent (slow start-up, a budget of seconds): a search of any
    budget ends with an answer, and says by how much it overran (``SearchResult.overrun_s``).
    The one rule of both backends.
    """
    return any(t.state == TrialState.COMPLETE for t in trials)


TrialDecision = Literal["start", "overtime", "wait", "stop"]


def next_trial(trials: list[FrozenTrial], budget: Budget, overtime_used: bool) -> TrialDecision:
    """Whether a search starts its next trial under ``budget``, the one rule of both backends.

    "start" while the longest finished trial still fits in what is left. Past that: "stop" once
    the study has an answer (``has_completed``) or its one trial past the budget was tried;
    "wait" while trials still run towards a first answer (Ray); else "overtime": start one trial
    past the budget, so that a search of any budget ends with an answer.

    Example:
        >>> next_trial([], Budget(60.0, time.monotonic()), overtime_used=False)
        'start'
        >>> spent = Budget(1.0, time.monotonic() - 10)
        >>> next_trial([], spent, overtime_used=False), next_trial([], spent, overtime_used=True)
        ('overtime', 'stop')
    """
    if budget.remaining_s() > expected_trial_s(trials):
        return "start"
    if has_completed(trials) or overtime_used:
        return "stop"
    if any(t.state == TrialState.RUNNING for t in trials):
        return "wait"
    return "overtime"


def lengthened(share: Budget, whole: Budget, kept_s: float) -> Budget:
    """The proxy phase's ``share`` of the ``whole`` budget, lengthened so that it leaves only
    ``kept_s`` (what the second phase is expected to need) when the share leaves more; never
    shortened. The local backend's rule: its second phase runs in this process, where it can
    be timed (``search.full.FullPhasePlan``).

    Example:
        >>> whole = Budget(200.0, 0.0)  # 5 s of it is the reserve
        >>> lengthened(whole.first(0.6), whole, kept_s=30.0).total_s, lengthened(whole.first(0.6), whole, 150.0).total_s
        (165.0, 120.0)
    """
    return Budget(max(share.total_s, whole.total_s - whole.reserve_s - kept_s), share.started_at)


def current_budget(study: optuna.Study, share: Budget, whole: Budget | None) -> Budget:
    """The budget a search phase works to: its ``share`` once the study has a complete trial,
    the ``whole`` command's before (a search that ends with no result is worth nothing: slow
    start-up, a short budget). The one rule of both backends."""
    if whole is None or study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return share
    return whole
