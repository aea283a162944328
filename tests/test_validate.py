"""search validate: sampling, statistics, the full-training cache, and the command end to end."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from conftest import ROOT, run_cli
from search.config import (
    Config,
    ConfigError,
    DataConfig,
    FidelityConfig,
    FullTrainConfig,
    ModelConfig,
    ProxyConfig,
    SpaceConfig,
)
from search.data import make_synthetic
from search.progress import ceiling_line, proxy_seeds_line, width_bias_line
from search.tracking import Tracker
from search.validate import (
    CACHE_FILE,
    CandidateResult,
    FullTrainingCache,
    ValidationResult,
    bootstrap_intervals,
    chance_rho,
    combined_scores,
    mean_reliability,
    middle_width,
    of_ceiling,
    overall_width,
    proxy_seed_report,
    recipe_key,
    replica_rho,
    report_for,
    sample_profiles,
    seed_ceiling,
    seeds_needed,
    train_missing,
    width_bias,
    with_combined,
)


def test_profiles_cover_every_layer_evenly_and_depend_on_the_seed() -> None:
    space = SpaceConfig(layers=3, width_choices=None, width_min=8, width_max=96, width_step=8)  # 12 choices
    profiles = sample_profiles(space, 12, seed=1)
    for layer in range(3):
        assert sorted(p[layer] for p in profiles) == list(range(8, 97, 8))  # one per stratum
    assert sample_profiles(space, 12, seed=1) == profiles != sample_profiles(space, 12, seed=2)
    few = sample_profiles(space, 4, seed=0)  # 4 strata of 3 choices each
    for layer in range(3):
        assert sorted((p[layer] - 8) // 24 for p in few) == [0, 1, 2, 3]


def test_an_equal_width_sample_varies_the_shape_at_one_overall_width() -> None:
    space = SpaceConfig(layers=4, width_choices=None, width_min=8, width_max=96, width_step=8)
    profiles = sample_profiles(space, 24, seed=1, sample="equal-width")
    assert len(set(profiles)) == 24 and all(len(p) == 4 and set(p) <= set(space.choices(0)) for p in profiles)
    target = middle_width(space)  # 4 x (log2 8 + log2 96) / 2
    assert target == pytest.approx(2 * (3 + np.log2(96)))
    assert all(abs(overall_width(p) - target) <= 0.5 for p in profiles)
    assert len({p[0] for p in profiles}) >= 6 and len({p[3] for p in profiles}) >= 6  # shapes, not one profile
    assert sample_profiles(space, 24, seed=1, sample="equal-width") == profiles
    assert sample_profiles(space, 24, seed=2, sample="equal-width") != profiles
    spread = sample_profiles(space, 24, seed=1)
    assert max(map(overall_width, spread)) - min(map(overall_width, spread)) > 3  # the default spans widths


def test_an_equal_width_sample_larger_than_the_space_allows_is_a_clear_error() -> None:
    space = SpaceConfig(layers=2, width_choices=(4, 8, 16))  # 4-16, 8-8, 16-4 have log2 sum 6 (+-0.5)
    assert sorted(sample_profiles(space, 3, seed=0, sample="equal-width")) == [(4, 16), (8, 8), (16, 4)]
    with pytest.raises(ConfigError, match="candidates 4: the space has only 3 profiles of overall width 6.0"):
        sample_profiles(space, 4, seed=0, sample="equal-width")
    with pytest.raises(ConfigError, match="unknown sample 'latin'; choose among spread, equal-width"):
        Config(fidelity=FidelityConfig(sample="latin")).validate()


def test_a_perfect_and_a_reversed_ranking() -> None:
    accuracy = [0.5, 0.6, 0.7, 0.8]
    perfect = report_for("x", [1, 2, 3, 4], accuracy, [0.1] * 4, [1.0] * 4, resamples=200, seed=0)
    assert perfect.spearman == pytest.approx(1) and perfect.kendall == pytest.approx(1) and perfect.regret == 0
    assert perfect.cost_s == pytest.approx(0.1) and perfect.cost_ratio == pytest.approx(0.1)
    reversed_ = report_for("x", [4, 3, 2, 1], accuracy, [0.1] * 4, [1.0] * 4, resamples=200, seed=0)
    assert reversed_.spearman == pytest.approx(-1) and reversed_.regret == pytest.approx(0.3)


def test_top_k_regret_is_what_the_best_of_the_top_k_picks_misses() -> None:
    accuracy = [0.5, 0.9, 0.7, 0.8]
    scores = [4, 1, 3, 2]  # picks 0.5, then 0.7, 0.8, and the best (0.9) last
    for k, expected in ((1, 0.4), (2, 0.2), (3, 0.1), (4, 0.0), (9, 0.0)):
        report = report_for("x", scores, accuracy, [0.0] * 4, [1.0] * 4, 50, 0, top_k=k)
        assert report.regret == pytest.approx(0.4) and report.regret_top_k == pytest.approx(expected)
        assert report.top_k == min(k, 4)


def test_beyond_width_separates_knowing_the_shape_from_counting_width() -> None:
    rng = np.random.default_rng(0)
    widths = [tuple(int(w) for w in rng.choice([4, 8, 16, 32, 64], size=3)) for _ in range(40)]
    size = np.array([overall_width(w) for w in widths])
    shape = np.array([np.log2(w[0]) - np.log2(w[2]) for w in widths])  # wide first, narrow last is better
    accuracy = size + shape
    counts_width = report_for("size", size, accuracy, [0.0] * 40, [1.0] * 40, 50, 0, widths=widths)
    knows_shape = report_for("shape", accuracy, accuracy, [0.0] * 40, [1.0] * 40, 50, 0, widths=widths)
    assert counts_width.spearman > 0.6 and counts_width.beyond_width == 0.0
    assert knows_shape.beyond_width == pytest.approx(1.0)
    assert np.isnan(report_for("x", size, accuracy, [0.0] * 40, [1.0] * 40, 50, 0).beyond_width)  # no widths given


def test_combined_scores_are_a_rank_mean_and_the_search_score_the_proxy_less_a_weight_per_halved_width() -> None:
    def candidate(widths: tuple[int, ...], proxy: float, params: float) -> CandidateResult:
        return CandidateResult(widths, (0.5,), 1.0, 0, {"proxy": proxy, "params": params, "synflow": 0.0},
                               {"proxy": 2.0, "params": 0.5, "synflow": 0.1})

    space = SpaceConfig(layers=2, width_choices=(4, 8, 16))
    results = [candidate((16, 16), 0.9, 10.0), candidate((4, 16), 0.5, 30.0), candidate((8, 8), 0.7, 20.0),
               candidate((16, 8), 0.7, 40.0)]
    uniform = ProxyConfig(width_weight=0.01, frozen_width_weight=0.01, last_frozen_width_weight=0.01)
    combined, names = with_combined(results, ["proxy", "params", "synflow"], space, uniform, 1)
    assert names == ["proxy", "params", "synflow", "rank_mean", "proxy_score", "width_term"]
    # proxy ranks 4, 1, 2.5, 2.5 (ties share); params 1, 3, 2, 4
    assert [c.scores["rank_mean"] for c in combined] == [2.5, 2.0, 2.25, 3.25]
    # 0.01 per halving of a layer below 16: 4-16 loses 0.02, 8-8 0.02, 16-8 0.01, which breaks the proxy's tie
    assert [c.scores["proxy_score"] for c in combined] == pytest.approx([0.9, 0.48, 0.68, 0.69])
    assert [c.scores["width_term"] for c in combined] == pytest.approx([0.0, -0.02, -0.02, -0.01])
    assert [c.cost_s["rank_mean"] for c in combined] == [2.5] * 4  # the parts' costs together
    assert [c.cost_s["proxy_score"] for c in combined] == [2.0] * 4
    assert [c.cost_s["width_term"] for c in combined] == [0.0] * 4  # the widths alone cost nothing
    assert [c.scores["proxy"] for c in combined] == [0.9, 0.5, 0.7, 0.7]  # the scorers' own scores stay
    # A frozen first layer's halvings count last_frozen_width_weight (it is the last frozen one), the
    # trained layer's width_weight: the same overall width scores higher with its width in the
    # trained layer (4-16 over 16-4).
    split = ProxyConfig(width_weight=0.02, frozen_width_weight=0.5, last_frozen_width_weight=0.005)
    assert combined_scores("width_term", results, space, split, 1) == pytest.approx([0.0, -0.01, -0.025, -0.02])
    # With both layers frozen the first counts frozen_width_weight, the second last_frozen_width_weight.
    assert combined_scores("width_term", results, space, split, 2) == pytest.approx([0.0, -1.0, -0.505, -0.005])
    assert combined_scores("proxy_score", results, space, split, 0) == pytest.approx([0.9, 0.46, 0.66, 0.68])
    assert with_combined(results, ["params", "synflow"], space, uniform, 1) == (results, ["params", "synflow"])
    assert with_combined(results, ["proxy", "synflow"], space, uniform, 1)[1] == [
        "proxy", "synflow", "proxy_score", "width_term"]
    # all weights 0: the search's score is the proxy's accuracy, which has its own row
    none = ProxyConfig(width_weight=0.0, frozen_width_weight=0.0, last_frozen_width_weight=0.0)
    assert with_combined(results, ["proxy", "params"], space, none, 1)[1] == ["proxy", "params", "rank_mean"]
    with pytest.raises(ValueError, match="'other'"):  # a name in COMBINED needs its rule
        combined_scores("other", results, space, uniform, 1)


def test_the_proxy_seed_report_gives_each_seeds_rho_their_agreement_and_their_means_rho() -> None:
    def candidate(accuracy: float, *proxy: float) -> CandidateResult:
        return CandidateResult((4, 4), (accuracy,), 1.0, 0, {"proxy": proxy[0]}, {"proxy": 1.0}, proxy)

    results = [candidate(0.1, 1, 2), candidate(0.2, 2, 1), candidate(0.3, 3, 3), candidate(0.4, 4, 4)]
    report = proxy_seed_report(results)
    assert report is not None
    assert report.rhos == pytest.approx((1.0, 0.8)) and report.agreement == pytest.approx(0.8)
    # the mean scores 1.5, 1.5, 3, 4 rank with a tie: 4.5 / sqrt(4.5 * 5)
    assert report.mean_rho == pytest.approx(4.5 / np.sqrt(4.5 * 5))
    line = proxy_seeds_line(ValidationResult(tuple(results), (), "run", 1, "recipe", 0.5, 1, proxy_seeds=report))
    assert line is not None and "the proxy with 2 seeds" in line and "rho 1.000 / 0.800 against the target" in line
    assert "spread 0.200" in line and "agree at 0.800" in line and "mean ranks at 0.949 (2x the cost)" in line
    assert report.score_rhos == () and "the search's score" not in line  # no width penalty: the score is the accuracy
    assert proxy_seed_report(results, [0.0] * 4) == report
    # The search's score is each seed's accuracy less the candidate's width penalty: 1, 2, 0.5, 4 and 2, 1, 0.5, 4
    penalised = proxy_seed_report(results, [0.0, 0.0, 2.5, 0.0])
    assert penalised is not None and penalised.rhos == report.rhos
    assert penalised.score_rhos == pytest.approx((0.4, 0.2))
    assert penalised.score_mean_rho == pytest.approx(1.5 / np.sqrt(4.5 * 5))  # 1.5, 1.5, 0.5, 4: a tie again
    line = proxy_seeds_line(ValidationResult(tuple(results), (), "run", 1, "recipe", 0.5, 1, proxy_seeds=penalised))
    assert line is not None and "as the search's score (less the width penalty: proxy_score) rho 0.400 / 0.200, " \
        "their mean 0.316, its top-1 regret 0.0000 / 0.0000" in line
    # Each seed's top pick under the score: 1, 2, 1.5, 1.5 picks the second (0.2 below the best),
    # 2, 1, 1.5, 1.5 the first (0.3 below)
    picks = proxy_seed_report(results, [0.0, 0.0, 1.5, 2.5])
    assert picks is not None and picks.score_regrets == pytest.approx((0.2, 0.3))
    single = [candidate(0.1, 1), candidate(0.2, 2), candidate(0.3, 3)]
    assert proxy_seed_report(single) is None
    assert proxy_seeds_line(ValidationResult(tuple(single), (), "run", 1, "recipe", 0.5)) is None


def test_width_bias_finds_the_layer_a_scorer_overvalues_and_the_one_it_undervalues() -> None:
    rng = np.random.default_rng(0)
    profiles = [tuple(int(w) for w in rng.choice([4, 8, 16, 32, 64], size=3)) for _ in range(40)]
    logs = np.log2(np.array(profiles, dtype=float))
    accuracy = logs @ [1.0, 1.0, 1.0] + rng.normal(0, 0.3, 40)  # every layer's width counts alike
    scores = logs @ [2.0, 1.0, 0.2] + rng.normal(0, 0.3, 40)  # counts the first twice, the last hardly
    bias = width_bias(scores, accuracy, profiles)
    assert bias[0] > chance_rho(40) and bias[2] < -chance_rho(40) and abs(bias[1]) < chance_rho(40)
    assert width_bias(accuracy, accuracy, profiles) == (0.0, 0.0, 0.0)  # ranks exactly like training
    assert np.isnan(width_bias(scores, accuracy, [(8, *p[1:]) for p in profiles])[0])  # one width: nothing to say


def test_the_width_bias_line_reads_the_proxy_row_with_the_chance_level() -> None:
    candidates = tuple(CandidateResult(w, (a,), 1.0, 0, {"proxy": s}, {"proxy": 1.0})
                       for w, a, s in [((8, 8), 1, 1), ((16, 8), 2, 3), ((8, 16), 3, 2), ((16, 16), 4, 4)])
    report = report_for("proxy", [1, 3, 2, 4], [1, 2, 3, 4], [1.0] * 4, [2.0] * 4, 10, 0,
                        widths=[c.widths for c in candidates])
    line = width_bias_line(ValidationResult(candidates, (report,), "run", 1, "recipe", 0.5))
    assert line is not None and "by layer" in line and "L1 +0.71, L2 -0.71" in line
    assert f"beyond +-{chance_rho(4):.2f} unlikely by chance with 4 candidates; L1 is frozen in the proxy" in line
    params = report_for("params", [1, 3, 2, 4], [1, 2, 3, 4], [1.0] * 4, [2.0] * 4, 10, 0,
                        widths=[c.widths for c in candidates])
    assert width_bias_line(ValidationResult(candidates, (params,), "run", 1, "recipe", 0.5)) is None


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_candidates() -> None:
    rng = np.random.default_rng(0)

    def width(n: int) -> float:
        accuracy = rng.random(n)
        scores = accuracy + 0.3 * rng.random(n)
        (low, high), _ = bootstrap_intervals(scores, accuracy, 500, seed=0)
        report = report_for("x", scores, accuracy, [0.0] * n, [1.0] * n, 500, 0)
        assert low <= report.spearman <= high
        return high - low

    assert width(200) < width(12)


def test_the_cache_key_follows_what_changes_training(tmp_path: Path) -> None:
    config = Config()
    key = recipe_key(config, (8, 16))
    assert key == recipe_key(config, (8, 16)) != recipe_key(config, (8, 24))
    assert key != recipe_key(Config(full=FullTrainConfig(epochs_per_stage=4)), (8, 16))
    assert key == recipe_key(Config(full=FullTrainConfig(epochs=12)), (8, 16))  # 2 x 6 epochs: the same training
    assert key != recipe_key(Config(full=FullTrainConfig(epochs=13)), (8, 16))
    assert recipe_key(Config(full=FullTrainConfig(epochs=8)), (8, 16)) == recipe_key(
        Config(full=FullTrainConfig(epochs_per_stage=4)), (8, 16))
    assert key == recipe_key(Config(full=FullTrainConfig(lazy_threshold=0.1)), (8, 16))  # analysis only
    assert key == recipe_key(Config(full=FullTrainConfig(fine_tune_epochs=9)), (8, 16))  # slimming only
    assert key != recipe_key(Config(data=DataConfig(texture_size=28)), (8, 16))
    assert key != recipe_key(Config(data=DataConfig(shapes_size=28)), (8, 16))
    # A setting added since caches were first written leaves the key as it was at its default, so
    # those caches stay valid: this key was computed before texture_size and shapes_* existed (and
    # while partial widening was the default full training).
    assert recipe_key(Config(full=FullTrainConfig(mode="partial")), (8, 8), 0) == "3ee42d9de8064e4b824c4a2b"
    cache = FullTrainingCache(tmp_path / "c" / "cache.json")
    cache.put(key, {"val_acc": 0.5, "seconds": 1.0})
    assert FullTrainingCache(tmp_path / "c" / "cache.json").get(key) == {"val_acc": 0.5, "seconds": 1.0}


def test_missing_trainings_run_seed_by_seed_so_an_interrupted_run_leaves_whole_replicas(tmp_path: Path) -> None:
    config = Config(model=ModelConfig(hidden=(8,)), full=FullTrainConfig(stages=1, epochs_per_stage=1),
                    fidelity=FidelityConfig(full_seeds=2))
    data = make_synthetic(64, 32, num_classes=2, image_size=8, seed=0)
    cache = FullTrainingCache(tmp_path / CACHE_FILE)
    order: list[tuple[str, int]] = []
    trained = train_missing([(4, 4), (8, 4), (4, 8)], data, config, cache,
                            on_training=lambda done, total, entry: order.append((entry["widths"], entry["seed"])))
    assert order == [("4-4", 0), ("8-4", 0), ("4-8", 0), ("4-4", 1), ("8-4", 1), ("4-8", 1)]
    assert trained == set(cache.entries)


TINY = ["--dataset", "synthetic", "--layers", "2", "--width-range", "4:16:4", "--frozen", "1", "--proxy-epochs",
        "1", "--stages", "1", "--epochs-per-stage", "2", "--batch-size", "64", "--device", "cpu", "--bootstrap", "50"]


@pytest.mark.slow
def test_validate_reports_every_scorer_logs_to_mlflow_and_reuses_full_trainings(tmp_path: Path) -> None:
    first = run_cli(["validate", *TINY, "--candidates", "4", "--full-seeds", "1"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for field in ("Spearman rho", "tau", "beyond width", "regret", "regret@3", "s/candidate", "cost/full", "/ceiling",
                  "proxy", "params", "synflow", "naswot", "grad_norm", "rank_mean", "proxy_score", "width_term"):
        assert field in first.stdout
    assert "seed ceiling: needs --full-seeds 2 or more" in first.stdout
    assert "0 of 4 full trainings (4 candidates x 1 seed) came from the cache" in first.stdout

    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (parent,) = [r for r in tracker.client.search_runs([tracker.experiment_id])
                 if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.data.tags["phase"] == "validate"
    for scorer in ("proxy", "params", "synflow", "grad_norm", "rank_mean", "proxy_score"):
        assert -1 <= parent.data.metrics[f"spearman_{scorer}"] <= 1
        assert parent.data.metrics[f"cost_s_{scorer}"] > 0
        assert 0 <= parent.data.metrics[f"regret_top_k_{scorer}"] <= parent.data.metrics[f"regret_{scorer}"]
        assert -1 <= parent.data.metrics.get(f"beyond_width_{scorer}", 0) <= 1  # nan is not logged
    assert any(f"beyond_width_{scorer}" in parent.data.metrics for scorer in ("proxy", "params", "synflow"))
    assert "where the proxy departs from full training, by layer" in " ".join(first.stdout.split())
    assert any(f"width_bias_proxy_L{layer}" in parent.data.metrics for layer in (1, 2))
    plots = {a.path for a in tracker.client.list_artifacts(parent.info.run_id, "plots")}
    assert {f"plots/scatter_{s}.png" for s in ("proxy", "params", "synflow", "naswot", "grad_norm")} <= plots
    children = tracker.children(parent.info.run_id)
    assert len(children) == 4 and all(c.data.tags["full_training"] == "trained" for c in children)
    assert all(0 <= c.data.metrics["full_val_acc"] <= 1 and "score_proxy" in c.data.metrics for c in children)

    second = run_cli(["validate", *TINY, "--candidates", "4", "--full-seeds", "1", "--scorers", "proxy,params",
                      "--proxy-epochs", "2"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "4 of 4 full trainings (4 candidates x 1 seed) came from the cache" in second.stdout
    assert "synflow" not in second.stdout
    runs = tracker.client.search_runs([tracker.experiment_id], filter_string="tags.full_training = 'cache'")
    assert len(runs) == 4
    before = {c.data.params["widths"]: c.data.metrics["full_val_acc"] for c in children}
    assert {r.data.params["widths"]: r.data.metrics["full_val_acc"] for r in runs} == before

    # A second seed trains only the new replicas; the first seed's come from the cache.
    third = run_cli(["validate", *TINY, "--candidates", "4", "--full-seeds", "2", "--scorers", "proxy,params"],
                    cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert "4 of 8 full trainings (4 candidates x 2 seeds) came from the cache" in third.stdout
    assert third.stdout.count("1 cached, 1 trained in") == 4
    (latest,) = tracker.client.search_runs([tracker.experiment_id], "tags.phase = 'validate' and "
                                           "attributes.run_name LIKE 'validate-%'", order_by=["start_time DESC"],
                                           max_results=1)
    assert -1 <= latest.data.metrics["seed_ceiling"] <= 1
    ceiling = latest.data.metrics["seed_ceiling"]
    assert f"seed ceiling (rho between two full-training seeds) {ceiling:.3f}" in third.stdout
    assert latest.data.metrics["target_reliability"] == pytest.approx(2 * ceiling / (1 + ceiling))
    replicas = {c.data.params["widths"]: (c.data.metrics["full_val_acc_seed0"], c.data.metrics["full_val_acc_seed1"])
                for c in tracker.children(latest.info.run_id)}
    assert {w: seeds[0] for w, seeds in replicas.items()} == before  # seed 0 reused, not retrained
    for widths, (seed0, seed1) in replicas.items():
        mean = next(c for c in tracker.children(latest.info.run_id) if c.data.params["widths"] == widths)
        assert mean.data.metrics["full_val_acc"] == pytest.approx((seed0 + seed1) / 2)
    fourth = run_cli(["validate", *TINY, "--candidates", "4", "--full-seeds", "2", "--scorers", "params"],
                     cwd=tmp_path)
    assert "8 of 8 full trainings (4 candidates x 2 seeds) came from the cache" in fourth.stdout
    assert "rank_mean" in third.stdout and "rank_mean" not in fourth.stdout  # needs both scorers


def test_full_trainings_timed_on_another_device_are_said_to_be(tmp_path: Path) -> None:
    args = ["validate", *TINY, "--candidates", "3", "--full-seeds", "1", "--scorers", "params"]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "cost/full divides" not in first.stdout  # trained and scored on the CPU
    cache_file = tmp_path / "runs" / CACHE_FILE
    entries = json.loads(cache_file.read_text())
    assert {entry["device"] for entry in entries.values()} == {"cpu"}
    # the same cache, as if its full trainings had run on a GPU (the README's ground truths did)
    cache_file.write_text(json.dumps({key: {**entry, "device": "cuda"} for key, entry in entries.items()}))
    second = run_cli(args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "3 of 3 full trainings" in second.stdout
    assert ("cost/full divides the scorers' seconds on cpu by full trainings timed on cuda (from the cache)"
            in " ".join(second.stdout.split()))


@pytest.mark.slow
def test_validate_with_workers_caches_every_training_and_says_how_they_were_timed(tmp_path: Path) -> None:
    args = ["validate", *TINY, "--candidates", "3", "--full-seeds", "2", "--scorers", "params"]
    first = run_cli([*args, "--workers", "2"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "from scratch, 2 epochs, cosine rate, 2 seed(s) each, 2 at a time" in " ".join(first.stdout.split())
    assert all(f"full training   {done}/6" in first.stdout for done in range(1, 7))
    assert "0 of 6 full trainings (3 candidates x 2 seeds) came from the cache" in first.stdout
    entries = json.loads((tmp_path / "runs" / CACHE_FILE).read_text())
    assert len(entries) == 6 and {(e["workers"], e["device"]) for e in entries.values()} == {(2, "cpu")}
    accuracies: dict[str, dict[int, float]] = {}
    for entry in entries.values():
        accuracies.setdefault(entry["widths"], {})[entry["seed"]] = entry["val_acc"]
    assert len(accuracies) == 3 and all(set(seeds) == {0, 1} for seeds in accuracies.values())
    assert ("cost/full divides the scorers' seconds on cpu by full trainings timed up to 2 at a time (--workers), "
            "each slower than alone" in " ".join(first.stdout.split()))
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (parent,) = [r for r in tracker.client.search_runs([tracker.experiment_id])
                 if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["full_workers"] == "2" and parent.data.tags["full_devices"] == "cpu"
    children = tracker.children(parent.info.run_id)  # each candidate's target: the mean of its workers' trainings
    assert {c.data.params["widths"]: c.data.metrics["full_val_acc"] for c in children} == pytest.approx(
        {widths: (seeds[0] + seeds[1]) / 2 for widths, seeds in accuracies.items()})

    second = run_cli(args, cwd=tmp_path)  # one at a time now: everything comes from the cache, timed as it was
    assert second.returncode == 0, second.stderr
    assert "6 of 6 full trainings" in second.stdout and "full training   1/" not in second.stdout
    assert "timed up to 2 at a time" in " ".join(second.stdout.split())


@pytest.mark.slow
def test_interrupting_validate_keeps_finished_trainings_and_stops_its_workers(tmp_path: Path) -> None:
    # 24 trainings of ~1 s (3,000 images) so the interrupt lands while many are still to do, even
    # when a loaded machine delays this process's look at the cache (the run never gets to finish).
    (tmp_path / "slow.toml").write_text("[data]\nsynthetic_train = 3000\nsynthetic_val = 300\n")
    command = [sys.executable, "-m", "search.cli", "validate", "--config", "slow.toml", *TINY, "--candidates", "12",
               "--full-seeds", "2", "--scorers", "params", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    cache_file = tmp_path / "runs" / CACHE_FILE
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not cache_file.is_file():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no full training finished in 120 s"
            time.sleep(0.05)
        workers = children_of(process.pid)
        os.kill(process.pid, signal.SIGINT)  # what Ctrl-C sends (the workers ignore theirs)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()  # the process this test started
            process.wait()
    assert process.returncode == 130, err
    assert "interrupted; finished full trainings are cached in the store" in err and "Traceback" not in err
    kept = json.loads(cache_file.read_text())
    assert 1 <= len(kept) < 24 and {e["workers"] for e in kept.values()} == {2}
    assert len(workers) >= 2
    time.sleep(1)
    assert not [pid for pid in workers if alive(pid)], "a worker outlived the interrupted run"


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.slow
def test_validate_on_an_equal_width_sample_says_so_and_records_it(tmp_path: Path) -> None:
    # 2 layers of 4..16 step 4: 4-16, 16-4, 8-8, 4-12 and 12-4 lie within 0.5 of the middle (log2 sum 6).
    args = ["validate", *TINY, "--sample", "equal-width", "--full-seeds", "1", "--scorers", "params,proxy"]
    result = run_cli([*args, "--candidates", "4", "--proxy-seeds", "2"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "on 4 equal-width profiles of synthetic" in result.stdout and "of one overall width" in result.stdout
    assert "the proxy with 2 seeds" in " ".join(result.stdout.split())
    assert "as the search's score (less the width penalty: proxy_score) rho" in " ".join(result.stdout.split())
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (parent,) = [r for r in tracker.client.search_runs([tracker.experiment_id])
                 if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.params["fidelity.sample"] == "equal-width"
    children = tracker.children(parent.info.run_id)
    widths = {c.data.params["widths"] for c in children}
    assert len(widths) == 4 and widths <= {"4-16", "16-4", "8-8", "4-12", "12-4"}
    # --proxy-seeds 2: the first seed is the table's proxy, the second another draw; both on every run
    assert all(c.data.metrics["score_proxy_seed0"] == c.data.metrics["score_proxy"] for c in children)
    assert all(0 <= c.data.metrics["score_proxy_seed1"] <= 1 for c in children)
    assert {"spearman_proxy_seed0", "spearman_proxy_seed1"} <= set(parent.data.metrics) or any(
        len({c.data.metrics[f"score_proxy_seed{i}"] for c in children}) == 1 for i in (0, 1))  # a constant: nan

    too_many = run_cli([*args, "--candidates", "6", "--store", "other"], cwd=tmp_path)
    assert too_many.returncode == 2 and "Traceback" not in too_many.stderr
    assert "candidates 6: the space has only 5 profiles of overall width 6.0" in too_many.stderr
    assert not (tmp_path / "other").exists()  # nothing started


def test_the_mean_of_more_seeds_is_a_more_reliable_target() -> None:
    # Spearman-Brown: one seed is the ceiling itself; more seeds approach 1; 0.9 needs enough of them.
    assert mean_reliability(0.6, 1) == pytest.approx(0.6)
    assert mean_reliability(0.6, 2) < mean_reliability(0.6, 4) < 1
    needed = seeds_needed(0.65)
    assert mean_reliability(0.65, needed) >= 0.9 > mean_reliability(0.65, needed - 1)
    assert seeds_needed(-0.1) is None


def test_the_mark_of_ceiling_is_what_one_more_training_reaches_against_the_mean_of_the_seeds() -> None:
    # Simulated trainings: a true accuracy per profile plus seed noise that two seeds agree on at
    # about rho 0.45. One more seed, ranked against the mean of 16 others, agrees at replica_rho.
    rng = np.random.default_rng(0)
    profiles, seeds = 4000, 16
    truth = rng.normal(size=profiles)
    noise = np.sqrt(1 / 0.45 - 1)  # Pearson agreement of two seeds: 0.45
    trained = truth[:, None] + noise * rng.normal(size=(profiles, seeds + 1))
    rho = seed_ceiling(trained[:, :2])
    one_more = scipy.stats.spearmanr(trained[:, -1], trained[:, :seeds].mean(axis=1))[0]
    assert one_more == pytest.approx(replica_rho(rho, seeds), abs=0.03)
    assert replica_rho(rho, 1) == pytest.approx(rho)  # one seed: the seed ceiling itself
    assert rho < replica_rho(rho, seeds) < np.sqrt(rho)


def test_the_seed_ceiling_is_the_mean_rank_agreement_between_seeds() -> None:
    assert seed_ceiling([[1, 1, 3], [2, 2, 1], [3, 3, 2]]) == pytest.approx((1 - 0.5 - 0.5) / 3)


@pytest.mark.slow
def test_a_saturated_target_is_named_not_printed_as_nan() -> None:
    def result(replicas: list[tuple[float, ...]]) -> ValidationResult:
        candidates = tuple(CandidateResult((4, 4), r, 1.0, 0, {}, {}) for r in replicas)
        return ValidationResult(candidates, (), "run", 1, "recipe", seed_ceiling(replicas), len(replicas[0]))

    saturated = ceiling_line(result([(1.0, 1.0)] * 3))
    assert "every full training ended at val_acc 1.0000" in saturated and "saturates" in saturated
    assert "seed ceiling (rho between two full-training seeds) 1.000" in ceiling_line(
        result([(0.5, 0.52), (0.6, 0.61), (0.7, 0.7)]))
    assert ceiling_line(result([(0.5,), (0.6,), (0.7,)])) == "seed ceiling: needs --full-seeds 2 or more"


def test_a_target_that_is_mostly_seed_noise_is_said_to_be_and_gets_no_ratio() -> None:
    # Four profiles, two seeds that agree on only part of the order: ceiling 0.2, 2-seed target 0.33.
    replicas = [(0.1, 0.3), (0.2, 0.2), (0.3, 0.1), (0.4, 0.4)]
    ceiling = seed_ceiling(replicas)
    assert ceiling == pytest.approx(0.2) and mean_reliability(ceiling, 2) < 0.5
    report = report_for("x", [1, 2, 3, 4], [sum(r) / 2 for r in replicas], [0.0] * 4, [1.0] * 4, 50, 0)
    (noisy,) = of_ceiling([report], ceiling, 2)
    assert np.isnan(noisy.of_ceiling)
    (trusted,) = of_ceiling([report], ceiling, 20)  # 20 seeds: reliability 0.83
    assert trusted.of_ceiling == pytest.approx(report.spearman / replica_rho(ceiling, 20))
    candidates = tuple(CandidateResult((4, 4), r, 1.0, 0, {}, {}) for r in replicas)
    line = ceiling_line(ValidationResult(candidates, (noisy,), "run", 1, "recipe", ceiling, 2))
    assert "the target is mostly seed noise" in line and "--full-seeds 36 would reach 0.9" in line


def test_seeds_that_rank_in_opposite_orders_are_said_to_disagree_without_a_reliability() -> None:
    # Two seeds in exactly opposite orders: ceiling -1, where Spearman-Brown divided by zero.
    replicas = [(0.1, 0.4), (0.2, 0.3), (0.3, 0.2), (0.4, 0.1)]
    ceiling = seed_ceiling(replicas)
    assert ceiling == pytest.approx(-1.0) and np.isnan(mean_reliability(ceiling, 2))
    report = report_for("x", [1, 2, 3, 4], [0.25] * 3 + [0.26], [0.0] * 4, [1.0] * 4, 50, 0)
    (unrated,) = of_ceiling([report], ceiling, 2)
    assert np.isnan(unrated.of_ceiling)
    candidates = tuple(CandidateResult((4, 4), r, 1.0, 0, {}, {}) for r in replicas)
    line = ceiling_line(ValidationResult(candidates, (unrated,), "run", 1, "recipe", ceiling, 2))
    assert line == ("seed ceiling (rho between two full-training seeds) -1.000; the seeds do not agree at all: "
                    "train longer before trusting any ranking")


def test_the_frozen_sweep_covers_k_from_zero_to_every_layer(tmp_path: Path) -> None:
    result = run_cli(["validate", "--frozen-sweep", "--widths", "8-16-16", "--dataset", "synthetic",
                      "--proxy-epochs", "2", "--device", "cpu"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in table] == ["0", "1", "2", "3"]
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (run,) = tracker.client.search_runs([tracker.experiment_id])
    trained = [m.value for m in sorted(tracker.client.get_metric_history(run.info.run_id, "trained_params"),
                                       key=lambda m: m.step)]
    assert len(trained) == 4 and trained == sorted(trained, reverse=True)  # each frozen layer trains less
    assert {"plots/frozen_sweep.png"} == {a.path for a in tracker.client.list_artifacts(run.info.run_id, "plots")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frozen-sweep"], "--frozen-sweep needs --widths"),
        (["--widths", "8-16"], "--widths goes with --frozen-sweep"),
        (["--scorers", "proxy,magic"], "unknown scorer 'magic'"),
        (["--scorers", "rank_mean"], "scorer 'rank_mean' is not chosen: validate reports it whenever proxy and params"),
        (["--scorers", "proxy_score"], "validate reports it whenever proxy is among the scorers"),
        (["--candidates", "2"], "candidates 2 must be an integer >= 3"),
        (["--proxy-seeds", "2", "--scorers", "params"], "proxy seeds 2: the proxy is not among the scorers (params)"),
        (["--proxy-seeds", "0"], "proxy seeds 0 is not a positive integer"),
        (["--workers", "0"], "workers 0 is not a positive integer"),
        (["--frozen-sweep", "--widths", "8-16", "--workers", "2"], "--workers goes with validate's full trainings"),
    ],
)
def test_validate_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli(["validate", *args], cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
