"""``search validate``: does a cheap score rank width profiles the way full training does?

``run_validation`` samples profiles across the space (a Latin hypercube over each layer's
width choices; or, with ``sample = "equal-width"``, profiles of one overall width), trains
each in full with one fixed recipe (``fidelity.workers`` at a time; cached in the store, so a
second run with other scorer settings does not retrain), scores each with every scorer, and
reports per scorer Spearman's rho and Kendall's tau against full accuracy with bootstrap
95 % intervals, the regret of its top-1 pick and of its top ``search.top_k`` picks (what a
search that trains its top k in full would miss) and its cost per candidate.

``run_frozen_sweep`` answers the question before choosing k: for one profile and k = 0 ... L
frozen layers, the trained parameters, seconds per epoch with and without the feature cache,
and the validation accuracy after the proxy's epochs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from models import format_widths
from search import pictures
from search.config import COMBINED, Config, DataConfig, ProxyConfig, SpaceConfig
from search.data import TensorData
from search.errors import ConfigError
from search.proxy import Candidate, describe, score_candidate
from search.scorers import SCORERS, ScorerSettings
from search.session import load_data, open_store
from search.space import width_penalty
from search.tracking import Tracker
from search.workers import FullJob, train_many

CACHE_FILE = "full_training_cache.json"


# -- sampling -----------------------------------------------------------------------


EQUAL_WIDTH_BAND = 0.5  # the equal-width sample: |sum of log2 widths - the middle| <= this
EQUAL_WIDTH_DRAWS = 200_000  # uniform draws from the space before giving up on finding enough


def sample_profiles(space: SpaceConfig, count: int, seed: int, sample: str = "spread") -> list[tuple[int, ...]]:
    """``count`` width profiles, seeded: spread across the space (``spread_profiles``), or distinct
    ones of one overall width (``equal_width_profiles``)."""
    if sample == "equal-width":
        return equal_width_profiles(space, count, seed)
    return spread_profiles(space, count, seed)


def middle_width(space: SpaceConfig) -> float:
    """The overall width (sum of log2 widths) half-way between the narrowest and widest profile.

    Example:
        >>> middle_width(SpaceConfig(layers=5, width_choices=(4, 8, 16, 32, 64)))  # 16-16-16-16-16
        20.0
    """
    return float(sum((math.log2(min(space.choices(layer))) + math.log2(max(space.choices(layer)))) / 2
                     for layer in range(space.layers)))


def equal_width_profiles(space: SpaceConfig, count: int, seed: int) -> list[tuple[int, ...]]:
    """``count`` distinct profiles of one overall width and different shapes: drawn uniformly
    from the space, kept when their sum of log2 widths is within ``EQUAL_WIDTH_BAND`` of
    ``middle_width``, i.e. geometric mean widths within a factor 2 ** (0.5 / layers) of one
    another (power-of-two choices have whole-number sums, so with a whole-number middle they
    are exactly equal). Uniform among such profiles.

    In a spread sample accuracy follows the overall width so closely that counting width ranks
    it (0.87-0.93 on every sample in the README); here a score must tell shapes apart.

    Example:
        >>> space = SpaceConfig(layers=3, width_choices=(4, 8, 16, 32, 64))
        >>> profiles = equal_width_profiles(space, 6, seed=0)
        >>> len(set(profiles)), {overall_width(p) for p in profiles}
        (6, {12.0})
    """
    target = middle_width(space)
    choices = [np.asarray(space.choices(layer), dtype=np.int64) for layer in range(space.layers)]
    rng = np.random.default_rng(seed)
    found: dict[tuple[int, ...], None] = {}
    for _ in range(0, EQUAL_WIDTH_DRAWS, 4096):
        draws = np.column_stack([rng.choice(c, size=4096) for c in choices])
        keep = np.abs(np.log2(draws).sum(axis=1) - target) <= EQUAL_WIDTH_BAND + 1e-9
        for row in draws[keep]:
            found.setdefault(tuple(int(w) for w in row), None)
            if len(found) == count:
                return list(found)
    raise ConfigError(f"candidates {count}: the space has only {len(found)} profiles of overall width "
                      f"{target:.1f} +- {EQUAL_WIDTH_BAND} (sum of log2 widths); ask for fewer, or widen the space")


def spread_profiles(space: SpaceConfig, count: int, seed: int) -> list[tuple[int, ...]]:
    """``count`` width profiles spread across the space: per layer, a random permutation of
    ``count`` equal strata of its choices (a Latin hypercube), so every layer's range is
    covered evenly and the layers vary independently.

    Example:
        >>> profiles = spread_profiles(SpaceConfig(layers=2, width_choices=tuple(range(8, 65, 8))), 8, seed=0)
        >>> sorted(p[0] for p in profiles)
        [8, 16, 24, 32, 40, 48, 56, 64]
    """
    rng = np.random.default_rng(seed)
    columns = []
    for layer in range(space.layers):
        choices = space.choices(layer)
        strata = (rng.permutation(count) + rng.random(count)) / count  # one point per stratum, in [0, 1)
        columns.append([choices[min(int(u * len(choices)), len(choices) - 1)] for u in strata])
    return [tuple(int(column[i]) for column in columns) for i in range(count)]


# -- statistics ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScorerReport:
    scorer: str
    spearman: float
    spearman_ci: tuple[float, float]
    kendall: float
    kendall_ci: tuple[float, float]
    regret: float  # best full accuracy minus the full accuracy of this scorer's top pick
    cost_s: float  # mean seconds per candidate
    cost_ratio: float  # cost_s / mean full-training seconds per candidate
    of_ceiling: float = float("nan")  # spearman / what one more full training reaches (search.validate.replica_rho)
    # best full accuracy minus the best among this scorer's top_k picks: what a search that
    # trains its top_k candidates in full (search.top_k) would miss
    regret_top_k: float = float("nan")
    top_k: int = 0
    # Spearman's rho with the overall width (the sum of log widths) held fixed: what the
    # scorer knows about a profile's shape beyond how wide it is overall (partial_rank_correlation)
    beyond_width: float = float("nan")
    # Per layer: how the scorer's rank errors follow that layer's width (width_bias); () without profiles
    width_bias: tuple[float, ...] = ()


def _correlations(scores: np.ndarray, accuracy: np.ndarray) -> tuple[float, float]:
    if np.ptp(scores) == 0 or np.ptp(accuracy) == 0:
        return float("nan"), float("nan")  # a constant has no rank order
    return (float(scipy_stats.spearmanr(scores, accuracy).statistic),
            float(scipy_stats.kendalltau(scores, accuracy).statistic))


def top_regret(scores: Sequence[float], accuracy: Sequence[float], top_k: int = 1) -> float:
    """How far the best accuracy among the ``top_k`` candidates scored highest is below the best of
    all (ties in the score: the first candidate counts as higher)."""
    s, a = np.asarray(scores, dtype=np.float64), np.asarray(accuracy, dtype=np.float64)
    ranked = np.argsort(-s, kind="stable")
    return float(a.max() - a[ranked[: max(1, min(top_k, len(s)))]].max())


def rank_agreement(scores: Sequence[float], accuracy: Sequence[float]) -> tuple[float, float]:
    """(Spearman rho, top-1 regret) of ``scores`` against ``accuracy``: what ``report_for`` reports
    first, without the intervals and costs.

    Example:
        >>> rank_agreement([0.3, 0.1, 0.2], [0.9, 0.5, 0.8]), rank_agreement([0.1, 0.3, 0.2], [0.9, 0.5, 0.8])
        ((1.0, 0.0), (-1.0, 0.4))
    """
    rho, _ = _correlations(np.asarray(scores, dtype=np.float64), np.asarray(accuracy, dtype=np.float64))
    return rho, top_regret(scores, accuracy)


def bootstrap_intervals(
    scores: np.ndarray, accuracy: np.ndarray, resamples: int, seed: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Percentile 95 % intervals of (rho, tau) over candidates resampled with replacement."""
    rng = np.random.default_rng(seed)
    rhos, taus = [], []
    for _ in range(resamples):
        pick = rng.integers(0, len(scores), len(scores))
        rho, tau = _correlations(scores[pick], accuracy[pick])
        if not math.isnan(rho):
            rhos.append(rho)
            taus.append(tau)
    if not rhos:
        return (float("nan"), float("nan")), (float("nan"), float("nan"))
    return ((float(np.percentile(rhos, 2.5)), float(np.percentile(rhos, 97.5))),
            (float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))))


def overall_width(widths: Sequence[int]) -> float:
    """The sum of log2 widths (L times the log of the geometric mean width): how wide a
    profile is overall, whatever its shape.

    Example:
        >>> overall_width((8, 16, 32)), overall_width((16, 16, 16))
        (12.0, 12.0)
    """
    return float(np.log2(np.asarray(widths, dtype=np.float64)).sum())


def partial_rank_correlation(scores: Sequence[float], accuracy: Sequence[float], control: Sequence[float]) -> float:
    """Spearman's rho between ``scores`` and ``accuracy`` with ``control`` held fixed: the
    Pearson correlation of their ranks after a straight line in the control's ranks is
    taken out of each: 0 for scores that follow the control's order exactly (they know
    nothing beyond it), nan when accuracy does (there is nothing beyond it to know).

    In validate's samples accuracy follows the overall width closely (the sum of log widths
    alone ranks them at 0.87-0.93), so a scorer can rank well by counting width; this says
    whether it also tells apart profiles of the same overall width, which is what a width
    search under a cost limit needs.

    Example:
        >>> control = [1, 2, 3, 4, 5, 6]
        >>> accuracy = [0.1, 0.3, 0.2, 0.5, 0.4, 0.6]  # rises with the control, zig-zagging
        >>> round(partial_rank_correlation(accuracy, accuracy, control), 9)  # knows the zig-zag too
        1.0
        >>> partial_rank_correlation([2, 4, 6, 8, 10, 12], accuracy, control)  # knows only the control
        0.0
    """
    ranks = [scipy_stats.rankdata(np.asarray(v, dtype=np.float64)) for v in (scores, accuracy, control)]
    design = np.column_stack([np.ones_like(ranks[2]), ranks[2]])
    residuals = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0] for r in ranks[:2]]
    norms = [float(np.linalg.norm(r)) for r in residuals]
    tiny = 1e-9 * len(ranks[2])
    if norms[1] < tiny:
        return float("nan")
    if norms[0] < tiny:
        return 0.0
    return float(np.clip(residuals[0] @ residuals[1] / (norms[0] * norms[1]), -1.0, 1.0))


def width_bias(scores: Sequence[float], accuracy: Sequence[float],
               widths: Sequence[Sequence[int]]) -> tuple[float, ...]:
    """Per layer, Spearman's rho between a scorer's rank error (its rank of each profile minus
    full training's) and the layer's width: positive where it ranks profiles with that layer
    wide above where full training puts them, negative where below; 0 for every layer when it
    ranks exactly like full training, nan for a layer of one width throughout the sample.

    This says which widths to trust less in a searched profile, and where a scorer needs work:
    on every textures sample measured the proxy over-ranks a wide last frozen layer (random
    features are worth more the more of them there are, learned ones less so) and under-ranks
    a wide fourth layer (benchmarks/FIDELITY.md, "Where the proxy errs").

    Example:
        >>> profiles = [(8, 8), (16, 8), (8, 16), (16, 16)]
        >>> accuracy = [1, 2, 3, 4]  # the second layer's width matters more in full training
        >>> [round(b, 3) for b in width_bias([1, 3, 2, 4], accuracy, profiles)]  # the scorer favours the first
        [0.707, -0.707]
    """
    error = scipy_stats.rankdata(np.asarray(scores, dtype=np.float64)) - scipy_stats.rankdata(
        np.asarray(accuracy, dtype=np.float64))

    def bias(layer: np.ndarray) -> float:
        if np.ptp(layer) == 0:
            return float("nan")
        return 0.0 if np.ptp(error) == 0 else float(scipy_stats.spearmanr(error, layer).statistic)

    return tuple(bias(layer) for layer in np.log2(np.asarray(widths, dtype=np.float64)).T)


def chance_rho(candidates: int) -> float:
    """The |Spearman rho| beyond which a correlation over ``candidates`` pairs is unlikely by
    chance (two-sided p < 0.05, the t approximation).

    Example:
        >>> round(chance_rho(24), 2)
        0.4
    """
    t = float(scipy_stats.t.ppf(0.975, candidates - 2))
    return t / math.sqrt(candidates - 2 + t * t)


def report_for(scorer: str, scores: Sequence[float], accuracy: Sequence[float], cost_s: Sequence[float],
               full_s: Sequence[float], resamples: int, seed: int, top_k: int = 1,
               widths: Sequence[Sequence[int]] | None = None) -> ScorerReport:
    """One scorer's agreement with full training; ``widths`` (the profiles) add ``beyond_width``."""
    s, a = np.asarray(scores, dtype=np.float64), np.asarray(accuracy, dtype=np.float64)
    rho, tau = _correlations(s, a)
    rho_ci, tau_ci = bootstrap_intervals(s, a, resamples, seed)
    top_k = max(1, min(top_k, len(s)))
    mean_cost = float(np.mean(cost_s))
    return ScorerReport(scorer, rho, rho_ci, tau, tau_ci, top_regret(s, a), mean_cost,
                        mean_cost / max(float(np.mean(full_s)), 1e-12),
                        regret_top_k=top_regret(s, a, top_k), top_k=top_k,
                        beyond_width=float("nan") if widths is None else partial_rank_correlation(
                            s, a, [overall_width(w) for w in widths]),
                        width_bias=() if widths is None else width_bias(s, a, widths))


# -- the full-training cache --------------------------------------------------------


# Settings of FullTrainConfig that do not change a full training's result (the analysis after
# it, slimming's fine-tuning): left out of the cache key, so adding or changing one keeps the cache.
NOT_TRAINING = ("analysis_images", "lazy_threshold", "fine_tune_epochs")
# Data settings added after caches were written: left out of the key at their default value,
# so a cache written before they existed stays valid.
ADDED_LATER = {name: getattr(DataConfig(), name) for name in ("texture_size", "shapes_train", "shapes_val",
                                                              "shapes_size")}


def recipe_key(config: Config, widths: Sequence[int], seed: int | None = None) -> str:
    """What decides a full training's result: data, model, recipe, seed (default: the config's) and widths."""
    full = dataclasses.asdict(config.full)
    for name in NOT_TRAINING:
        full.pop(name)
    epochs = full.pop("epochs")  # added later: a recipe it does not change keeps its key
    if epochs is not None and epochs % config.full.stages:
        full["epochs"] = epochs
    elif epochs is not None:  # the same training as stages x (epochs / stages)
        full["epochs_per_stage"] = epochs // config.full.stages
    data = {name: value for name, value in dataclasses.asdict(config.data).items()
            if ADDED_LATER.get(name, object()) != value}
    recipe = {"data": data, "model": dataclasses.asdict(config.model), "full": full,
              "seed": config.search.seed if seed is None else seed, "widths": list(widths)}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:24]


class FullTrainingCache:
    """{recipe key: {"val_acc", "seconds", "widths"}} in one JSON file, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.entries[key] = entry
        self.write()

    def write(self) -> None:
        """Every entry to the file, atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            json.dump(self.entries, out, indent=1)
        os.replace(temporary, self.path)


# -- the validation run -------------------------------------------------------------


@dataclass(frozen=True)
class CandidateResult:
    widths: tuple[int, ...]
    replicas: tuple[float, ...]  # full validation accuracy of each training seed
    full_s: float  # mean seconds of one full training
    cached_seeds: int  # how many of the replicas came from the cache (the rest trained now)
    scores: dict[str, float]
    cost_s: dict[str, float]
    proxy_seeds: tuple[float, ...] = ()  # the proxy's score with seeds seed, seed+1, ... (--proxy-seeds > 1)
    full_devices: tuple[str, ...] = ()  # where each replica was trained and timed ("": its cache entry does not say)
    full_workers: tuple[int, ...] = ()  # trainings running at once while each replica was timed (validate --workers)

    @property
    def val_acc(self) -> float:
        """The target every scorer is ranked against: the mean over the training seeds."""
        return float(np.mean(self.replicas))

    @property
    def cached(self) -> bool:
        """Every full training came from the cache."""
        return self.cached_seeds == len(self.replicas)


@dataclass(frozen=True)
class ValidationResult:
    candidates: tuple[CandidateResult, ...]
    reports: tuple[ScorerReport, ...]
    parent_run_id: str
    frozen_layers: int
    recipe: str
    ceiling: float  # Spearman rho between seed replicas of full training (nan with one seed)
    full_seeds: int = 1
    proxy: str = ""  # the proxy's settings, in words ("k=2, 4 epochs x 2 tops")
    sample: str = ""  # what the candidates have in common, in words ("" for a spread sample)
    proxy_seeds: ProxySeeds | None = None  # with --proxy-seeds > 1
    device: str = ""  # where the scorers ran (the candidates' full_devices say where the full trainings did)

    @property
    def trainings(self) -> tuple[int, int]:
        """(full trainings taken from the cache, full trainings in all)."""
        return sum(c.cached_seeds for c in self.candidates), sum(len(c.replicas) for c in self.candidates)

    @property
    def target_reliability(self) -> float:
        """How well the target (the mean over seeds) would repeat with fresh seeds (nan with one)."""
        return mean_reliability(self.ceiling, self.full_seeds)

    @property
    def replica_rho(self) -> float:
        """How well one more full training would rank like the target: the mark of "/ceiling"."""
        return replica_rho(self.ceiling, self.full_seeds)


@dataclass(frozen=True)
class ProxySeeds:
    """The proxy scored with several seeds (other random frozen layers and tops)."""

    rhos: tuple[float, ...]  # Spearman rho against the target per seed; the first is the table's
    agreement: float  # mean Spearman rho between every two seeds' scores: the proxy's own ceiling
    mean_rho: float  # the rho of the mean score over the seeds (that many times the cost)
    # The same for the search's score (each seed's accuracy less the width penalty: proxy_score);
    # empty when no candidate has a penalty (both width weights 0: the score is the accuracy).
    score_rhos: tuple[float, ...] = ()
    score_mean_rho: float = math.nan
    score_regrets: tuple[float, ...] = ()  # each seed's score's top-1 regret (the table's is the first)


def proxy_seed_report(results: Sequence[CandidateResult], penalties: Sequence[float] = ()) -> ProxySeeds | None:
    """How far the proxy's own seed moves its ranking (None unless it was scored with 2+ seeds);
    with each candidate's width ``penalties``, also the search's score's (``proxy_score``).

    Two proxy settings whose rhos differ by less than the spread of ``rhos`` are not told apart
    by one run each (benchmarks/FIDELITY.md, "Two more samples of one overall width").
    """
    if not results or len(results[0].proxy_seeds) < 2:
        return None
    accuracy = np.array([c.val_acc for c in results])

    def ranking(columns: np.ndarray) -> tuple[tuple[float, ...], float]:
        """Each seed's rho (a column per seed) and the rho of the seeds' mean."""
        return (tuple(_correlations(column, accuracy)[0] for column in columns.T),
                _correlations(columns.mean(axis=1), accuracy)[0])

    columns = np.array([c.proxy_seeds for c in results])  # candidates x seeds
    rhos, mean_rho = ranking(columns)
    report = ProxySeeds(rhos, seed_ceiling(columns.tolist()), mean_rho)
    if not any(penalties):  # the search's score is the accuracy
        return report
    scores = columns - np.asarray(penalties, dtype=float)[:, None]
    score_rhos, score_mean_rho = ranking(scores)
    return replace(report, score_rhos=score_rhos, score_mean_rho=score_mean_rho,
                   score_regrets=tuple(top_regret(column, accuracy) for column in scores.T))


def seed_ceiling(replicas: Sequence[Sequence[float]]) -> float:
    """The noise ceiling: the mean Spearman rho between every two seeds' full accuracies.

    ``replicas[i][s]`` is candidate i's accuracy with seed s. It is how well full training
    ranks the candidates like itself when only the seed changes; no cheap score can be
    expected to agree with one seed's training better than another seed's training does.

    Example:
        >>> seed_ceiling([[0.5, 0.52], [0.6, 0.58], [0.7, 0.71]])
        1.0
        >>> import math; math.isnan(seed_ceiling([[0.5], [0.6], [0.7]]))
        True
    """
    table = np.asarray(replicas, dtype=np.float64)
    rhos = [_correlations(table[:, a], table[:, b])[0]
            for a in range(table.shape[1]) for b in range(a + 1, table.shape[1])]
    rhos = [rho for rho in rhos if not math.isnan(rho)]
    return float(np.mean(rhos)) if rhos else float("nan")


def mean_reliability(rho: float, seeds: int) -> float:
    """How well the mean of ``seeds`` trainings ranks like another such mean (Spearman-Brown),
    from ``rho``, the agreement of two single seeds.

    Example:
        >>> round(mean_reliability(0.8, 2), 3)
        0.889
        >>> import math; math.isnan(mean_reliability(-1.0, 2))  # seeds that disagree: no reliability
        True
    """
    if rho < 0:
        return float("nan")
    return seeds * rho / (1 + (seeds - 1) * rho)


def replica_rho(rho: float, seeds: int) -> float:
    """How well one more full training (one new seed) would rank the candidates like the target,
    the mean of ``seeds`` trainings, from ``rho``, the agreement of two single seeds:
    sqrt(rho * mean_reliability(rho, seeds)) (classical test theory). It is the mark a scorer's
    rho is read against ("/ceiling"): 1.0 ranks like training every candidate once more, above
    1 better than that. With one seed it is ``rho``; with many it rises towards sqrt(rho), since
    a mean of many seeds is a target no single training matches.

    Example:
        >>> round(replica_rho(0.8, 1), 3), round(replica_rho(0.453, 16), 3)
        (0.8, 0.649)
    """
    reliability = mean_reliability(rho, seeds)
    return math.sqrt(rho * reliability) if rho > 0 and reliability > 0 else float("nan")


# Below this reliability the target (the mean over seeds) is mostly seed noise: rho against it,
# and rho over the ceiling, say little (profiles of one overall width on digits: 0.07 with 4 seeds).
NOISY_TARGET = 0.5


def target_is_noise(ceiling: float, seeds: int) -> bool:
    """Whether the mean of ``seeds`` full trainings repeats below ``NOISY_TARGET`` (or not at all)."""
    return not mean_reliability(ceiling, seeds) >= NOISY_TARGET


def of_ceiling(reports: Sequence[ScorerReport], ceiling: float, seeds: int) -> tuple[ScorerReport, ...]:
    """Each report with its rho over what one more full training would reach against the target
    (``replica_rho``); left nan where the target is mostly noise (``target_is_noise``), since a
    ratio to noise means nothing."""
    if target_is_noise(ceiling, seeds):
        return tuple(reports)
    mark = replica_rho(ceiling, seeds)
    return tuple(replace(r, of_ceiling=r.spearman / mark) for r in reports)


def seeds_needed(rho: float, target: float = 0.9) -> int | None:
    """The fewest seeds whose mean reaches ``target`` reliability (None when rho <= 0).

    Example:
        >>> seeds_needed(0.8), seeds_needed(0.7), seeds_needed(0.95)
        (3, 4, 1)
    """
    if not rho > 0:
        return None
    return max(1, math.ceil(target * (1 - rho) / (rho * (1 - target)) - 1e-9))


CandidateHandler = Callable[[int, int, CandidateResult], None]
TrainingHandler = Callable[[int, int, dict[str, Any]], None]  # (trainings done, to do, the cache entry)


def run_validation(config: Config, on_candidate: CandidateHandler | None = None,
                   on_training: TrainingHandler | None = None) -> ValidationResult:
    """Sample, train fully what the cache lacks (``fidelity.workers`` at a time), score,
    correlate, log to MLflow."""
    profiles = sample_profiles(config.space, config.fidelity.candidates, config.search.seed, config.fidelity.sample)
    data = load_data(config)
    tracker = open_store(config.store)
    cache = FullTrainingCache(config.store.path / CACHE_FILE)
    frozen = config.space.frozen_layers[0]
    settings = ScorerSettings(config.model, config.proxy, config.search.seed)
    seeds = config.fidelity.full_seeds
    recipe = f"{config.full.describe()}, mean of {seeds} seed{'s' if seeds > 1 else ''}"
    parent_id = tracker.start_run(
        time.strftime("validate-%Y%m%d-%H%M%S"),
        params={**config.to_flat_dict(), "seed": config.search.seed, "frozen_layers": frozen},
        tags={"phase": "validate", "dataset": data.name, "recipe": recipe},
    )
    results: list[CandidateResult] = []
    with tracker.ending(parent_id):
        trained = train_missing(profiles, data, config, cache, on_training)
        for index, widths in enumerate(profiles):
            result = validate_candidate(widths, frozen, data, config, settings, cache, trained)
            results.append(result)
            log_candidate(tracker, parent_id, result, frozen, config.search.seed)
            if on_candidate is not None:
                on_candidate(index, len(profiles), result)
        results, names = with_combined(results, config.fidelity.scorers, config.space, config.proxy, frozen)
        reports = tuple(
            report_for(name, [c.scores[name] for c in results], [c.val_acc for c in results],
                       [c.cost_s[name] for c in results], [c.full_s for c in results],
                       config.fidelity.bootstrap, config.search.seed, config.search.top_k,
                       [c.widths for c in results])
            for name in names
        )
        ceiling = seed_ceiling([c.replicas for c in results])
        reports = of_ceiling(reports, ceiling, seeds)
        proxy_seeds = proxy_seed_report(results, width_penalties(results, config.space, config.proxy, frozen))
        log_reports(tracker, parent_id, results, reports, ceiling, seeds, proxy_seeds)
    proxy = f"k={frozen}, {describe(config.proxy, data.x_train.shape[0])}"
    return ValidationResult(tuple(results), reports, parent_id, frozen, recipe, ceiling, seeds, proxy,
                            describe_sample(config), proxy_seeds, data.x_train.device.type)


def with_combined(results: list[CandidateResult], scorers: Sequence[str], space: SpaceConfig, proxy: ProxyConfig,
                  frozen: int) -> tuple[list[CandidateResult], list[str]]:
    """``results`` with every combined score (``COMBINED``) whose scorers were all run added to
    their scores (its cost: theirs together), and the scorer names to report (``scorers``, then those).

    ``proxy_score`` is the score a search gives the proxy (with ``frozen`` frozen layers): its
    accuracy less its width penalty (``search.space.width_penalty``); ``width_term`` is the penalty
    alone, negated, a score that needs no training: what the widths explain without the proxy
    (neither is reported when both weights are 0: the score is then the proxy's row);
    ``rank_mean``, the mean of the proxy's and the parameter count's ranks, says whether the two
    together rank better than either (README, "Proxy fidelity").
    """
    combined = [name for name, entry in COMBINED.items() if all(part in scorers for part in entry.needs)
                and (proxy.penalised or not entry.penalised)]
    for name in combined:
        costs = () if COMBINED[name].free else COMBINED[name].needs
        values = combined_scores(name, results, space, proxy, frozen)
        results = [replace(c, scores={**c.scores, name: value},
                           cost_s={**c.cost_s, name: sum(c.cost_s[part] for part in costs)})
                   for c, value in zip(results, values, strict=True)]
    return results, [*scorers, *combined]


def combined_scores(name: str, results: Sequence[CandidateResult], space: SpaceConfig, proxy: ProxyConfig,
                    frozen: int) -> list[float]:
    """The combined score ``name`` of each candidate, from its scores and widths."""
    if name == "rank_mean":
        parts = COMBINED[name].needs
        ranks = [scipy_stats.rankdata([c.scores[part] for c in results]) for part in parts]
        return [float(rank) for rank in np.mean(ranks, axis=0)]
    penalties = width_penalties(results, space, proxy, frozen)
    if name == "proxy_score":
        return [c.scores["proxy"] - penalty for c, penalty in zip(results, penalties, strict=True)]
    if name == "width_term":
        return [-penalty for penalty in penalties]
    raise ValueError(f"no rule for the combined score {name!r}")


def width_penalties(results: Sequence[CandidateResult], space: SpaceConfig, proxy: ProxyConfig,
                   frozen: int) -> list[float]:
    """Each candidate's width penalty: what the search's score takes off the proxy's accuracy."""
    return [width_penalty(c.widths, space, proxy, frozen) for c in results]


def describe_sample(config: Config) -> str:
    """What validate's profiles have in common, in words ("" for a spread sample)."""
    if config.fidelity.sample != "equal-width":
        return ""
    return f"of one overall width ({middle_width(config.space):.1f} +- {EQUAL_WIDTH_BAND} log2)"


def training_seeds(config: Config) -> list[int]:
    """The seeds of a candidate's full-training replicas: the search seed, then the next ones."""
    return [config.search.seed + replica for replica in range(config.fidelity.full_seeds)]


def train_missing(profiles: Sequence[tuple[int, ...]], data: TensorData, config: Config, cache: FullTrainingCache,
                  on_training: TrainingHandler | None = None) -> set[str]:
    """Train every full training of ``profiles`` (each of ``training_seeds``) that ``cache``
    lacks, ``config.fidelity.workers`` at a time, and cache each as it ends, so an interrupted
    run keeps what finished. Returns the keys trained now."""
    keys: dict[FullJob, str] = {}  # each replica cached on its own: adding seeds reuses the first
    # Seed by seed, so an interrupted run leaves its first seeds whole (but for the trainings in
    # flight), which a run with fewer --full-seeds uses.
    for seed in training_seeds(config):
        for widths in profiles:
            key = recipe_key(config, widths, seed)
            if cache.get(key) is None:
                keys[FullJob(tuple(widths), seed)] = key
    for done, (job, outcome) in enumerate(
            train_many(list(keys), data, config.model, config.full, config.fidelity.workers), 1):
        entry = {"widths": format_widths(job.widths), "seed": job.seed, "val_acc": outcome.val_acc,
                 "seconds": outcome.seconds, "device": outcome.device, "workers": outcome.workers}
        cache.put(keys[job], entry)
        if on_training is not None:
            on_training(done, len(keys), entry)
    return set(keys.values())


def validate_candidate(widths: tuple[int, ...], frozen: int, data: TensorData, config: Config,
                       settings: ScorerSettings, cache: FullTrainingCache, trained: set[str]) -> CandidateResult:
    """Score ``widths`` with every scorer against its full trainings, all in ``cache`` (those
    whose keys are in ``trained`` were trained by this run)."""
    replicas, seconds, devices, workers = [], [], [], []
    cached = 0
    for seed in training_seeds(config):
        key = recipe_key(config, widths, seed)
        entry = cache.get(key)
        if entry is None:
            raise RuntimeError(f"no full training of {format_widths(widths)} with seed {seed} in the cache")
        cached += key not in trained
        replicas.append(float(entry["val_acc"]))
        seconds.append(float(entry["seconds"]))
        devices.append(str(entry.get("device", "")))
        workers.append(int(entry.get("workers", 1)))
    candidate = Candidate(widths, frozen)
    scores, costs = {}, {}
    for name in config.fidelity.scorers:
        start = time.perf_counter()
        scores[name] = SCORERS[name](candidate, data, settings)
        costs[name] = time.perf_counter() - start
    proxy_seeds: tuple[float, ...] = ()
    if config.fidelity.proxy_seeds > 1:  # validated: the proxy is among the scorers
        proxy_seeds = (scores["proxy"], *(SCORERS["proxy"](candidate, data, replace(settings, seed=settings.seed + j))
                                          for j in range(1, config.fidelity.proxy_seeds)))
    return CandidateResult(widths, tuple(replicas), float(np.mean(seconds)), cached, scores, costs, proxy_seeds,
                           tuple(devices), tuple(workers))


def full_timing(results: Sequence[CandidateResult]) -> tuple[frozenset[str], int]:
    """How the full trainings behind cost/full were timed: the devices their cache entries
    record (entries that do not say are left out) and the most that ran at once."""
    return (frozenset(d for c in results for d in c.full_devices if d),
            max((w for c in results for w in c.full_workers), default=1))


def per_seed(result: CandidateResult) -> dict[str, float]:
    """A candidate's values per seed, as logged: each full training's accuracy and each proxy seed's score."""
    return {**{f"full_val_acc_seed{i}": acc for i, acc in enumerate(result.replicas)},
            **{f"score_proxy_seed{i}": score for i, score in enumerate(result.proxy_seeds)}}


def log_candidate(tracker: Tracker, parent_id: str, result: CandidateResult, frozen: int, seed: int) -> None:
    label = format_widths(result.widths)
    run_id = tracker.start_run(f"candidate-{label}", parent_id=parent_id,
                               params={"widths": label, "frozen_layers": frozen, "seed": seed,
                                       "full_seeds": len(result.replicas)},
                               tags={"phase": "validate", "full_training": "cache" if result.cached else "trained"})
    metrics = {"full_val_acc": result.val_acc, "full_time_s": result.full_s, **per_seed(result)}
    for name in result.scores:
        if math.isfinite(result.scores[name]):
            metrics[f"score_{name}"] = result.scores[name]
        metrics[f"cost_s_{name}"] = result.cost_s[name]
    tracker.log_metrics(run_id, metrics)
    tracker.end_run(run_id)


def log_reports(tracker: Tracker, parent_id: str, results: list[CandidateResult],
                reports: tuple[ScorerReport, ...], ceiling: float, seeds: int,
                proxy_seeds: ProxySeeds | None = None) -> None:
    metrics: dict[str, float] = {"seed_ceiling": ceiling, "target_reliability": mean_reliability(ceiling, seeds),
                                 "replica_rho": replica_rho(ceiling, seeds)}
    if proxy_seeds is not None:
        metrics.update({"proxy_seed_agreement": proxy_seeds.agreement, "spearman_proxy_seed_mean": proxy_seeds.mean_rho,
                        **{f"spearman_proxy_seed{i}": rho for i, rho in enumerate(proxy_seeds.rhos)},
                        **{f"spearman_proxy_score_seed{i}": rho for i, rho in enumerate(proxy_seeds.score_rhos)}})
        if proxy_seeds.score_rhos:
            metrics["spearman_proxy_score_seed_mean"] = proxy_seeds.score_mean_rho
            metrics.update({f"regret_proxy_score_seed{i}": r for i, r in enumerate(proxy_seeds.score_regrets)})
    for r in reports:
        metrics.update({f"spearman_{r.scorer}": r.spearman, f"kendall_{r.scorer}": r.kendall,
                        f"regret_{r.scorer}": r.regret, f"regret_top_k_{r.scorer}": r.regret_top_k,
                        f"cost_s_{r.scorer}": r.cost_s,
                        f"cost_ratio_{r.scorer}": r.cost_ratio, f"of_ceiling_{r.scorer}": r.of_ceiling,
                        f"beyond_width_{r.scorer}": r.beyond_width,
                        **{f"width_bias_{r.scorer}_L{i + 1}": bias for i, bias in enumerate(r.width_bias)}})
    tracker.log_metrics(parent_id, {k: v for k, v in metrics.items() if math.isfinite(v)})
    devices, at_once = full_timing(results)
    tracker.set_tags(parent_id, {"full_devices": ",".join(sorted(devices)) or "unrecorded", "full_workers": at_once})
    rows = [{"widths": format_widths(c.widths), "full_val_acc": c.val_acc, "full_time_s": c.full_s, **per_seed(c),
             **{f"score_{k}": v for k, v in c.scores.items()}, **{f"cost_s_{k}": v for k, v in c.cost_s.items()}}
            for c in results]
    tracker.log_table(parent_id, rows, "candidates.csv")
    tracker.log_json(parent_id, [dataclasses.asdict(r) for r in reports], "scorers.json")
    with tempfile.TemporaryDirectory() as folder:
        for r in reports:
            pictures.score_scatter([c.scores[r.scorer] for c in results], [c.val_acc for c in results], r.scorer,
                                   r.spearman, r.kendall, Path(folder) / f"scatter_{r.scorer}.png")
        tracker.log_artifacts(parent_id, Path(folder), "plots")


# -- the frozen-layer sweep ---------------------------------------------------------


@dataclass(frozen=True)
class SweepRow:
    frozen_layers: int
    trained_params: int
    frozen_params: int
    cache_s: float  # computing the frozen features once (cached run)
    epoch_s_cached: float  # median training pass per epoch over cached features
    epoch_s_uncached: float  # the same, recomputing the frozen layers per batch
    val_acc: float  # after the proxy's epochs (cached run)


def run_frozen_sweep(config: Config, widths: tuple[int, ...],
                     on_row: Callable[[SweepRow], None] | None = None) -> tuple[list[SweepRow], str]:
    """For k = 0 ... L frozen layers: cost and accuracy of the proxy on ``widths``."""
    data = load_data(config)
    tracker = open_store(config.store)
    label = format_widths(widths)
    parent_id = tracker.start_run(f"frozen-sweep-{label}",
                                  params={**config.to_flat_dict(), "widths": label, "seed": config.search.seed},
                                  tags={"phase": "frozen-sweep", "dataset": data.name, "widths": label})
    rows: list[SweepRow] = []
    with tracker.ending(parent_id):
        for frozen in range(len(widths) + 1):
            candidate = Candidate(widths, frozen)
            with_cache = score_candidate(candidate, data, config.model, config.proxy, config.search.seed)
            without = with_cache if frozen == 0 else score_candidate(  # nothing frozen: nothing to cache
                candidate, data, config.model, replace(config.proxy, cache_mb=0.0), config.search.seed)
            row = SweepRow(frozen, with_cache.trained_params, with_cache.frozen_params, with_cache.cache_time_s,
                           float(np.median([m.epoch_time_s for m in with_cache.history])),
                           float(np.median([m.epoch_time_s for m in without.history])), with_cache.score)
            rows.append(row)
            tracker.log_metrics(parent_id, {"trained_params": row.trained_params, "epoch_s_cached": row.epoch_s_cached,
                                            "epoch_s_uncached": row.epoch_s_uncached, "val_acc": row.val_acc,
                                            "cache_s": row.cache_s}, step=frozen)
            if on_row is not None:
                on_row(row)
        tracker.log_table(parent_id, [dataclasses.asdict(r) for r in rows], "frozen_sweep.csv")
        with tempfile.TemporaryDirectory() as folder:
            pictures.frozen_sweep_plot(rows, label, Path(folder) / "frozen_sweep.png")
            tracker.log_artifacts(parent_id, Path(folder), "plots")
    return rows, parent_id
