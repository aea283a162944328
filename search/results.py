"""What a search returns and logs: one summary per trial and per fully trained candidate.

Widths stay tuples here; they become text (``16-32-64``) only where they are printed or logged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from models import format_widths, parse_widths
from models.kernels import SYMMETRIES
from models.symmetry import LayerPlan


@dataclass(frozen=True)
class TrialSummary:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, REJECTED (over a limit: never trained)
    widths: tuple[int, ...]  # () if the trial failed before it had a candidate
    frozen_layers: int
    score: float | None
    trained_params: int | None
    frozen_params: int | None
    seconds: float | None
    run_id: str | None
    epoch_s: float | None = None  # mean seconds of one training epoch (the proxy's, or None for zero-cost)
    reached: float | None = None  # the last score reported: a pruned trial's too
    total_params: int | None = None  # the cost of the candidate (search/cost.py)
    macs: int | None = None
    latency_ms: float | None = None
    rejected: str | None = None  # why a candidate over a limit was never trained
    same_as: int | None = None  # the earlier trial of the same candidate whose score this one took
    width_penalty: float = 0.0  # what the score takes off the proxy's accuracy (search.trial.score_penalty)

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialSummary:
        attrs = trial.user_attrs
        # A multi-objective trial has values (accuracy, cost) and no single value.
        score = trial.values[0] if trial.state == TrialState.COMPLETE and trial.values else None
        return cls(
            number=trial.number,
            state="REJECTED" if "rejected" in attrs else trial.state.name,
            widths=parse_widths(attrs.get("widths", "")),
            frozen_layers=int(attrs.get("frozen_layers", -1)),
            score=score,
            trained_params=attrs.get("trained_params"),
            frozen_params=attrs.get("frozen_params"),
            seconds=attrs.get("seconds"),
            run_id=attrs.get("mlflow_run_id"),
            epoch_s=attrs.get("epoch_s"),
            reached=score if score is not None else last_reported(trial),
            total_params=attrs.get("total_params"),
            macs=attrs.get("macs"),
            latency_ms=attrs.get("latency_ms"),
            rejected=attrs.get("rejected"),
            same_as=attrs.get("same_as"),
            width_penalty=attrs.get("width_penalty", 0.0),
        )

    @property
    def label(self) -> str:
        return format_widths(self.widths)

    @property
    def accuracy(self) -> float | None:
        """The proxy's validation accuracy: the score before its width penalty (a proxy trial's)."""
        return None if self.score is None else self.score + self.width_penalty

    def cost(self, name: str) -> float | None:
        """The cost an objective names: ``params`` (total), ``macs`` or ``latency`` (ms)."""
        return {"params": self.total_params, "macs": self.macs, "latency": self.latency_ms}[name]

    def row(self) -> dict[str, Any]:
        """The summary as one row of a logged table (widths as text)."""
        return {**dataclasses.asdict(self), "widths": self.label}


def last_reported(trial: FrozenTrial) -> float | None:
    """The value at the trial's last reported step (None if it reported nothing); a
    multi-objective trial keeps its accuracy per epoch in the user attribute ``curve``."""
    if not trial.intermediate_values:
        curve = trial.user_attrs.get("curve")
        return curve[-1] if curve else None
    return trial.intermediate_values[max(trial.intermediate_values)]


def rank_completed(trials: Iterable[TrialSummary]) -> list[TrialSummary]:
    """Complete trials, best first (a repeat of a scored candidate is not listed again): the
    higher score, then (ties) the fewer trained parameters, then the earlier trial. The one
    ordering of the printed table, the parent run's best and the candidates of the second phase."""
    done = [t for t in trials if t.state == "COMPLETE" and t.same_as is None]
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
    kept_widths: tuple[int, ...] | None = None  # the model kept (its best epoch), when a narrower stage's
    # The whole full training alone (no analysis): measured, or for a stopped one its epochs'
    # mean time times the epochs planned (search.progressive.FullResult.whole_seconds).
    full_s: float | None = None
    analysis_images: int | None = None  # validation images the learned widths were measured on

    @property
    def label(self) -> str:
        return format_widths(self.widths)

    @property
    def kept_note(self) -> str:
        """What to say after the widths when the model kept is a narrower stage's ("" otherwise)."""
        if self.kept_widths is None or self.kept_widths == self.widths:
            return ""
        return f" (kept as {format_widths(self.kept_widths)}: its best epoch)"

    @property
    def learned_label(self) -> str | None:
        return None if self.learned_widths is None else format_widths(self.learned_widths)

    def row(self) -> dict[str, Any]:
        """The summary as one row of a logged table (widths as text)."""
        kept = None if self.kept_widths is None else format_widths(self.kept_widths)
        return {**dataclasses.asdict(self), "widths": self.label, "learned_widths": self.learned_label,
                "kept_widths": kept,
                "stage_epoch_s": ",".join(f"{s:.4g}" for s in self.stage_epoch_s)}


@dataclass(frozen=True)
class TrialCost:
    """What a trial of the search cost against a full training of the same search (same data,
    device and recipe): the claim that scoring a candidate is cheap, measured in every run."""

    trials: int  # trials that trained: complete, pruned or failed (not repeats, not rejected)
    mean_trial_s: float  # pruned trials stop early, and later trials reuse frozen features
    full: int  # candidates trained in full (a stopped one's time extrapolated to all its epochs)
    mean_full_s: float  # their training alone
    complete_share: float | None  # mean over those candidates of their own trial's seconds / their training's

    @property
    def share(self) -> float:
        """A trial's mean seconds as a share of one full training's."""
        return self.mean_trial_s / self.mean_full_s

    def metrics(self) -> dict[str, float]:
        own = {} if self.complete_share is None else {"complete_trial_cost_share": self.complete_share}
        return {"mean_trial_s": self.mean_trial_s, "mean_full_train_s": self.mean_full_s,
                "trial_cost_share": self.share, **own}


def trial_cost(trials: Iterable[TrialSummary], full: Iterable[FullSummary]) -> TrialCost | None:
    """A trial's cost against a full training, or None without a trained trial and a full
    training whose whole time is known.

    Example:
        >>> t = [TrialSummary(0, "COMPLETE", (8, 8), 1, 0.5, 10, 5, 4.0, None),
        ...      TrialSummary(1, "PRUNED", (4, 8), 1, None, 10, 5, 1.0, None),
        ...      TrialSummary(2, "COMPLETE", (8, 8), 1, 0.5, 10, 5, 0.0, None, same_as=0)]
        >>> f = [FullSummary(1, 0, (8, 8), 0.5, "COMPLETE", 0.9, None, 10, 45.0, "r", full_s=40.0),
        ...      FullSummary(2, 1, (4, 8), 0.4, "FAIL", None, None, None, 3.0, "q")]
        >>> cost = trial_cost(t, f)
        >>> cost.mean_trial_s, cost.share, cost.complete_share
        (2.5, 0.0625, 0.1)
    """
    spent = {t.number: t.seconds for t in trials
             if t.state in ("COMPLETE", "PRUNED", "FAIL") and t.same_as is None and t.seconds is not None}
    trained = [(f.trial, f.full_s) for f in full if f.full_s is not None]  # a failed one has no full_s
    if not spent or not trained:
        return None
    own = [spent[trial] / full_s for trial, full_s in trained if trial in spent]
    return TrialCost(
        trials=len(spent),
        mean_trial_s=sum(spent.values()) / len(spent),
        full=len(trained),
        mean_full_s=sum(full_s for _, full_s in trained) / len(trained),
        complete_share=sum(own) / len(own) if own else None,
    )


def best_full(full: Iterable[FullSummary]) -> FullSummary | None:
    """The winner: the best full accuracy, preferring candidates whose training completed."""
    trained = [f for f in full if f.val_acc is not None]
    return max(trained, key=lambda f: (f.state == "COMPLETE", f.val_acc, -f.rank), default=None)


@dataclass(frozen=True)
class SlimReport:
    widths: tuple[int, ...]  # the trained network's
    slim_widths: tuple[int, ...]  # after removing the lazy kernels (at least one kept per layer)
    params: int
    slim_params: int
    macs: int
    slim_macs: int
    latency_ms: float
    slim_latency_ms: float
    val_acc: float  # the trained network
    removed_acc: float  # right after removing the lazy kernels, before fine-tuning
    tuned_acc: float  # after fine-tuning
    epochs: int  # fine-tuning epochs run
    lr: float
    seconds: float
    run_id: str | None = None  # the child run that holds the slimmed weights

    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in dataclasses.asdict(self).items()
                if isinstance(v, int | float) and k not in ("epochs", "lr")}

    def summary(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "widths": format_widths(self.widths),
                "slim_widths": format_widths(self.slim_widths)}


@dataclass(frozen=True)
class SimplifyReport:
    """Kernels snapped to their symmetric form at one threshold, frozen, the rest fine-tuned."""

    threshold: float | None  # kernels whose best symmetry score is >= this were snapped; None: the control
    widths: tuple[int, ...]
    plans: tuple[LayerPlan, ...]  # per conv layer: each kernel's best symmetry, score, snapped or not
    val_acc: float  # the trained network
    projected_acc: float  # right after snapping, before fine-tuning
    tuned_acc: float  # after fine-tuning the kernels that were not snapped
    epochs: int  # fine-tuning epochs run
    lr: float
    seconds: float
    run_id: str | None = None  # the child run that holds the simplified weights

    @property
    def simplified(self) -> int:
        return sum(p.simplified for p in self.plans)

    @property
    def free_before(self) -> int:
        return sum(p.free_before for p in self.plans)

    @property
    def free_after(self) -> int:
        return sum(p.free_after for p in self.plans)

    @property
    def removed_share(self) -> float:
        """The share of the conv layers' free kernel weights that snapping removed."""
        return 1 - self.free_after / self.free_before

    def metrics(self) -> dict[str, float]:
        return {"val_acc": self.val_acc, "projected_acc": self.projected_acc, "tuned_acc": self.tuned_acc,
                "kernels_simplified": float(self.simplified), "free_weights": float(self.free_before),
                "free_weights_after": float(self.free_after), "removed_share": self.removed_share}

    def rows(self) -> list[dict[str, Any]]:
        """One row per conv layer and one for the whole network, for a CSV."""
        def row(layer: str, plans: Sequence[LayerPlan]) -> dict[str, Any]:
            counts = {s: sum(p.counts()[s] for p in plans) for s in SYMMETRIES}
            return {"threshold": "control" if self.threshold is None else self.threshold, "layer": layer,
                    "kernels": sum(len(p.chosen) for p in plans),
                    "simplified": sum(p.simplified for p in plans), **counts,
                    "free_before": sum(p.free_before for p in plans), "free_after": sum(p.free_after for p in plans)}

        network = {"val_acc": self.val_acc, "projected_acc": self.projected_acc, "tuned_acc": self.tuned_acc}
        blank = dict.fromkeys(network, "")  # accuracies are the whole network's
        return [{**row(str(p.layer + 1), [p]), **blank} for p in self.plans] + [{**row("all", self.plans), **network}]


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
    objective: str = "accuracy"
    cost: str = "params"  # the pareto objective's cost
    slim: SlimReport | None = None  # --slim: the winner with its lazy kernels removed
    budget_s: float | None = None  # the command's wall-clock budget
    full_skipped: bool = False  # the second phase was on, but the budget left no time to train one candidate
    full_planned: int = 0  # candidates the second phase picked (the top k); fewer trained when the budget ran out
    late_answer: bool = False  # the first trial completed past the budget (search.budget.has_completed)
    proxy_phase_s: float | None = None  # seconds from the budget's start to the proxy phase's end
    teardown_error: str | None = None  # Ray's shutdown raised this after the search (the result stands)

    @property
    def overrun_s(self) -> float:
        """Seconds past the budget: a search runs its first trial to the end even past the budget
        (``search.budget.has_completed``); otherwise only Tune's lag or the closing reserve's.

        Example:
            >>> SearchResult("s", "r", Path("runs"), "sqlite:///x", (), elapsed_s=18.0, budget_s=8.0).overrun_s
            10.0
        """
        return 0.0 if self.budget_s is None else max(0.0, self.elapsed_s - self.budget_s)

    @property
    def trial_cost(self) -> TrialCost | None:
        return trial_cost(self.trials, self.full)

    @property
    def winner(self) -> FullSummary | None:
        return best_full(self.full)

    def completed(self) -> list[TrialSummary]:
        return rank_completed(self.trials)

    @property
    def best(self) -> TrialSummary | None:
        done = self.completed()
        return done[0] if done else None

    def count(self, state: str) -> int:
        return sum(t.state == state for t in self.trials)
