"""One trial, the same under every backend: cost, limits, scorer, and its MLflow run.

``run_trial`` scores one candidate where it is called (this process for the local backend,
a Ray worker for the Ray backend): it measures the candidate's cost on the data's device,
opens the trial's MLflow run (``trial-N``, params, cost metrics), rejects a candidate over a
limit before any training, scores it with the configured scorer (the proxy, or a zero-cost
one), logs every epoch and closes the run with the trial's state. The proxy's score is its
accuracy less a weight per halving of each layer's width below the space's widest
(``score_penalty``, ``search.space.layer_weights``): known before training, so every epoch's
value is the score so far.
The backends differ only in what they do around it: how they ask for candidates, the
``on_epoch`` hook (which may raise ``optuna.TrialPruned`` or ``BudgetExhausted`` to stop the
trial) and how they tell Optuna the outcome.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from search.budget import BudgetExhausted
from search.config import Config
from search.cost import Cost, measure_cost, over_limit
from search.data import TensorData
from search.events import EventHandler, TrialEnded
from search.proxy import Candidate, ProxyResult, score_candidate
from search.results import TrialSummary, rank_completed
from search.space import trial_identity, width_penalty
from search.tracking import Tracker
from search.train import EpochMetrics


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended: ``complete`` (with its result), ``pruned`` (stopped by the pruner or
    the budget), ``failed`` (it raised) or ``rejected`` (over a limit, never trained)."""

    state: str
    identity: dict[str, Any]  # widths, frozen layers, cost, width_penalty, mlflow_run_id: user attributes
    cost: Cost
    result: ProxyResult | None = None
    note: str | None = None  # why it was rejected, stopped or failed
    seconds: float = 0.0
    epoch_s: float | None = None  # mean seconds of one training epoch (without evaluation)

    @property
    def penalty(self) -> float:
        """What the score takes off the proxy's accuracy (``score_penalty``, in the identity)."""
        return float(self.identity.get("width_penalty", 0.0))

    @property
    def score(self) -> float | None:
        """What ranks the trial: the scorer's value less the penalty (None unless complete)."""
        return None if self.result is None else self.result.score - self.penalty


def score(candidate: Candidate, data: TensorData, config: Config,
          on_epoch: Callable[[EpochMetrics], None]) -> ProxyResult:
    """The configured scorer's result: the proxy (``on_epoch`` after every epoch) or a zero-cost
    score (no epochs)."""
    if config.search.scorer != "proxy":
        from search.scorers import ScorerSettings, zero_cost_trial

        settings = ScorerSettings(config.model, config.proxy, config.search.seed)
        return zero_cost_trial(config.search.scorer, candidate, data, settings)
    return score_candidate(candidate, data, config.model, config.proxy, config.search.seed, on_epoch=on_epoch)


def score_penalty(candidate: Candidate, config: Config) -> float:
    """What the trial's score takes off the proxy's accuracy (``search.space.width_penalty``; 0 for a
    zero-cost scorer)."""
    if config.search.scorer != "proxy":
        return 0.0
    return width_penalty(candidate.widths, config.space, config.proxy, candidate.frozen_layers)


def cost_metrics(cost: Cost) -> dict[str, float]:
    """The cost as MLflow metrics too, so the UI charts and sorts trials by it."""
    return {"total_params": cost.total_params, "macs": cost.macs, "latency_ms": cost.latency_ms}


def run_trial(
    number: int,
    candidate: Candidate,
    data: TensorData,
    config: Config,
    tracker: Tracker,
    parent_id: str,
    study_name: str,
    on_epoch: Callable[[EpochMetrics, float], None],
    on_start: Callable[[dict[str, Any], Cost], None] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> TrialOutcome:
    """Score ``candidate`` as trial ``number`` under ``parent_id``, recording it in MLflow.

    ``on_start`` sees the trial's identity and cost once its run is open (before training);
    ``on_epoch`` sees every epoch's metrics and score (what prunes and ranks the trial) after
    they are logged and may raise ``optuna.TrialPruned`` or
    ``BudgetExhausted``: the trial then ends ``pruned``. Any other exception ends it
    ``failed`` with its error (tag ``error``, ``error.txt``); Ctrl-C closes the run KILLED and
    goes on up.
    """
    cost = measure_cost(candidate, data, config.model, config.search.latency_batch)
    penalty = score_penalty(candidate, config)
    identity = {**trial_identity(candidate, cost), "width_penalty": penalty}
    run_id = tracker.start_run(
        f"trial-{number}",
        parent_id=parent_id,
        params={**identity, "seed": config.search.seed},
        tags={"phase": "proxy", "study": study_name, "trial": number, **(tags or {})},
    )
    tracker.log_metrics(run_id, cost_metrics(cost))
    identity = {**identity, "mlflow_run_id": run_id}
    if on_start is not None:
        on_start(identity, cost)
    rejected = over_limit(cost, config.search)
    if rejected is not None:  # never trained: no epoch, no score
        tracker.set_tags(run_id, {"state": "rejected", "rejected": rejected})
        tracker.end_run(run_id, "FINISHED")
        return TrialOutcome("rejected", identity, cost, note=rejected)

    epoch_times: list[float] = []

    def logged(metrics: EpochMetrics) -> None:
        score_now = metrics.val_acc - penalty
        tracker.log_metrics(run_id, {**metrics.as_metrics(), "score": score_now}, step=metrics.epoch)
        epoch_times.append(metrics.epoch_time_s)
        on_epoch(metrics, score_now)

    def mean_epoch_s() -> float | None:
        return sum(epoch_times) / len(epoch_times) if epoch_times else None

    start = time.perf_counter()
    try:
        result = score(candidate, data, config, logged)
    except (optuna.TrialPruned, BudgetExhausted) as stop:
        tracker.set_tags(run_id, {"state": "pruned", "stopped": str(stop)})
        tracker.end_run(run_id, "FINISHED")
        return TrialOutcome("pruned", identity, cost, note=str(stop), seconds=time.perf_counter() - start,
                            epoch_s=mean_epoch_s())
    except Exception as failure:  # a trial's bug or divergence must not end the search
        error = f"{type(failure).__name__}: {failure}"
        tracker.set_tags(run_id, {"state": "failed", "error": error[:5000]})
        tracker.log_text(run_id, traceback.format_exc(), "error.txt")
        tracker.end_run(run_id, "FAILED")
        return TrialOutcome("failed", identity, cost, note=error, seconds=time.perf_counter() - start,
                            epoch_s=mean_epoch_s())
    except KeyboardInterrupt:  # Ctrl-C
        tracker.end_run(run_id, "KILLED")
        raise
    # A stop from outside (Tune ends a stopped trial's thread with SystemExit) leaves the run to
    # the backend that stopped it: it knows why (search/backends/ray_tune.py, RunCloser).
    outcome = TrialOutcome("complete", identity, cost, result=result, seconds=result.seconds,
                           epoch_s=mean_epoch_s())
    accuracy = {"proxy_acc": result.score} if config.search.scorer == "proxy" else {}
    tracker.log_metrics(run_id, {**result.as_metrics(), "proxy_score": outcome.score, **accuracy})
    tracker.set_tags(run_id, {"state": "complete", "feature_cache": "memory" if result.cached else "none"})
    tracker.end_run(run_id, "FINISHED")
    return outcome


# -- which trials train: the rules both backends share --------------------------------

MAX_UNTRAINED_IN_A_ROW = 100  # the sampler keeps proposing candidates over the limits or scored: stop asking


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


def reuse_earlier_score(study: optuna.Study, trial: optuna.Trial, candidate: Candidate) -> bool:
    """If ``candidate`` was scored before, tell ``trial`` that score (user attribute ``same_as``,
    no MLflow run) and return True: the sampler proposed it again, training it again is waste."""
    earlier = scored_before(study, candidate)
    if earlier is None:
        return False
    for key, value in earlier.user_attrs.items():
        if key not in ("mlflow_run_id", "seconds", "epoch_s", "cached"):
            trial.set_user_attr(key, value)
    trial.set_user_attr("same_as", earlier.number)
    trial.set_user_attr("seconds", 0.0)
    study.tell(trial, earlier.values if len(earlier.values) > 1 else earlier.values[0])
    return True


def end_trial(study: optuna.Study, number: int, emit: EventHandler, error: str | None) -> None:
    """Emit ``TrialEnded`` for trial ``number`` with the best trial so far."""
    trials = study.get_trials(deepcopy=False)
    summary = next(TrialSummary.from_trial(t) for t in trials if t.number == number)
    ranked = rank_completed(TrialSummary.from_trial(t) for t in trials)
    emit(TrialEnded(summary, ranked[0] if ranked else None, error))
