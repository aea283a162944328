"""Progress events: the pipeline emits them, the command line draws them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from search.proxy import Candidate
from search.results import FullSummary, TrialSummary
from search.train import EpochMetrics


@dataclass(frozen=True)
class SearchStarted:
    study_name: str
    resumed_trials: int
    budget_s: float
    epochs: int
    device: str
    dataset: str
    scoring: str = ""  # the scorer and, for the proxy, its settings in words (search.proxy.describe)


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
    of: int  # candidates expected to be trained (those that fit the time left)
    widths: tuple[int, ...]
    proxy_score: float | None
    wanted: int = 0  # the top-k asked for (more than ``of`` when the budget fits fewer)
    mode: str = "none"  # how it trains: FullTrainConfig.mode


@dataclass(frozen=True)
class CandidateEnded:
    summary: FullSummary


Event = SearchStarted | TrialStarted | EpochDone | TrialEnded | StageStarted | CandidateStarted | CandidateEnded
EventHandler = Callable[[Event], None]
