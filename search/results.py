"""What a search returns and logs: one summary per trial and per fully trained candidate.

Widths stay tuples here; they become text (``16-32-64``) only where they are printed or logged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from models import format_widths, parse_widths


@dataclass(frozen=True)
class TrialSummary:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING
    widths: tuple[int, ...]  # () if the trial failed before it had a candidate
    frozen_layers: int
    score: float | None
    trained_params: int | None
    frozen_params: int | None
    seconds: float | None
    run_id: str | None
    epoch_s: float | None = None  # mean seconds of one training epoch (the proxy's, or None for zero-cost)
    reached: float | None = None  # the last score reported: a pruned trial's too

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialSummary:
        attrs = trial.user_attrs
        return cls(
            number=trial.number,
            state=trial.state.name,
            widths=parse_widths(attrs.get("widths", "")),
            frozen_layers=int(attrs.get("frozen_layers", -1)),
            score=trial.value if trial.state == TrialState.COMPLETE else None,
            trained_params=attrs.get("trained_params"),
            frozen_params=attrs.get("frozen_params"),
            seconds=attrs.get("seconds"),
            run_id=attrs.get("mlflow_run_id"),
            epoch_s=attrs.get("epoch_s"),
            reached=trial.value if trial.state == TrialState.COMPLETE else last_reported(trial),
        )

    @property
    def label(self) -> str:
        return format_widths(self.widths)

    def row(self) -> dict[str, Any]:
        """The summary as one row of a logged table (widths as text)."""
        return {**dataclasses.asdict(self), "widths": self.label}


def last_reported(trial: FrozenTrial) -> float | None:
    """The value at the trial's last reported step (None if it reported nothing)."""
    if not trial.intermediate_values:
        return None
    return trial.intermediate_values[max(trial.intermediate_values)]


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
    widths: tuple[int, ...]
    proxy_score: float | None
    state: str  # COMPLETE, STOPPED (budget: fewer stages or epochs), FAIL
    val_acc: float | None
    learned_widths: tuple[int, ...] | None
    trained_params: int | None
    seconds: float
    run_id: str
    note: str | None = None
    stage_epoch_s: tuple[float, ...] = ()  # mean seconds of one epoch, per widening stage trained

    @property
    def label(self) -> str:
        return format_widths(self.widths)

    @property
    def learned_label(self) -> str | None:
        return None if self.learned_widths is None else format_widths(self.learned_widths)

    def row(self) -> dict[str, Any]:
        """The summary as one row of a logged table (widths as text)."""
        return {**dataclasses.asdict(self), "widths": self.label, "learned_widths": self.learned_label,
                "stage_epoch_s": ",".join(f"{s:.4g}" for s in self.stage_epoch_s)}


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
