"""Cost of a candidate, limits that reject before training, and multi-objective (pareto) searches."""

import time
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from conftest import load_only_study, tiny_config
from models import ConvNet
from search.budget import Budget
from search.config import ConfigError, ModelConfig, SearchConfig
from search.cost import COST_ATTRS, Cost, count_macs, measure_cost, over_limit
from search.data import TensorData
from search.pareto import dominates, pareto_front
from search.proxy import Candidate
from search.results import TrialSummary
from search.study import run_search
from search.tracking import Tracker


def test_parameter_and_multiply_add_counts_equal_hand_computed_values() -> None:
    # conv 1->2 and 2->3 on 4x4 (pool after the second: 2x2), flatten 12 -> 5 -> 2.
    net = ConvNet((2, 3), in_channels=1, image_size=4, num_classes=2, hidden=(5,), frozen=1)
    assert net.pool_after == (1,)
    conv1, conv2 = 2 * 1 * 9 + 2, 3 * 2 * 9 + 3
    linear1, linear2 = 12 * 5 + 5, 5 * 2 + 2
    assert (net.frozen_params(), net.trained_params()) == (conv1, conv2 + linear1 + linear2)
    assert count_macs(net) == 2 * 1 * 9 * 16 + 3 * 2 * 9 * 16 + 12 * 5 + 5 * 2

    x = torch.zeros(8, 1, 4, 4)
    data = TensorData("hand", x, torch.zeros(8, dtype=torch.long), x, torch.zeros(8, dtype=torch.long), 2)
    cost = measure_cost(Candidate((2, 3), 1), data, ModelConfig(hidden=(5,)), batch_size=4)
    assert (cost.trained_params, cost.frozen_params, cost.total_params) == (conv2 + linear1 + linear2, conv1, 154)
    assert cost.macs == 1222 and cost.latency_ms > 0
    assert tuple(cost.record()) == COST_ATTRS  # what the Ray driver copies into Optuna


def test_limits_name_the_first_one_a_cost_is_over() -> None:
    cost = Cost(trained_params=900, frozen_params=200, macs=5000, latency_ms=1.5)
    assert over_limit(cost, SearchConfig()) is None
    assert over_limit(cost, SearchConfig(max_params=1100, max_macs=5000, max_latency_ms=1.5)) is None
    assert over_limit(cost, SearchConfig(max_macs=4999)) == "macs 5,000 > --max-macs 4,999"
    assert over_limit(cost, SearchConfig(max_latency_ms=1.0)) == "latency 1.5 ms > --max-latency-ms 1 ms"


def middle_params(store: Path) -> int:
    """Total parameters of the tiny space's middle profile, 8-8-8: a limit some profiles are over."""
    config = tiny_config(store)
    from search.session import load_data

    return measure_cost(Candidate((8, 8, 8), 1), load_data(config), config.model, 8).total_params


def test_a_candidate_over_max_params_is_never_trained_and_is_recorded_as_rejected(tmp_path: Path) -> None:
    limit = middle_params(tmp_path)
    config = tiny_config(tmp_path / "runs", trials=6, sampler="random", max_params=limit, top_k=2,
                         full_fraction=0.3)
    result = run_search(config, Budget(120, time.monotonic()))

    rejected = [t for t in result.trials if t.state == "REJECTED"]
    assert rejected, "the seed should propose a profile over the limit"
    assert all(t.total_params > limit and t.rejected.startswith("params ") for t in rejected)
    trained = [t for t in result.trials if t.state != "REJECTED"]
    assert len(trained) == 6 and all(t.total_params <= limit for t in trained)  # rejections do not count
    assert all(f.trial not in {t.number for t in rejected} for f in result.full)

    study = load_only_study(tmp_path / "runs")
    tracker = Tracker(config.store.mlflow_uri)
    for summary in rejected:
        trial = study.trials[summary.number]
        assert trial.state == TrialState.PRUNED and not trial.intermediate_values
        run = tracker.get_run(summary.run_id)
        assert run.data.tags["state"] == "rejected" and run.data.tags["rejected"] == summary.rejected
        assert tracker.client.get_metric_history(run.info.run_id, "val_acc") == []  # no epoch logged
        assert float(run.data.params["total_params"]) == summary.total_params
    parent = tracker.get_run(result.parent_run_id)
    assert parent.data.metrics["trials_rejected"] == len(rejected)


def test_limits_that_no_profile_fits_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "runs", max_params=10)
    with pytest.raises(ConfigError, match=r"the narrowest, 4-4-4, has params [\d,]+ > --max-params 10"):
        run_search(config, Budget(60, time.monotonic()))
    assert not (tmp_path / "runs").exists()


def test_a_pareto_search_returns_a_front_that_no_trial_dominates(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "runs", trials=8, objective="pareto", cost="macs", pruner="hyperband",
                         top_k=2, full_fraction=0.3)
    result = run_search(config, Budget(180, time.monotonic()))

    study = load_only_study(tmp_path / "runs")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    front = pareto_front(result.trials, "macs")
    complete = [t for t in result.trials if t.state == "COMPLETE"]
    assert front and len(complete) >= 2
    for member in front:
        assert not any(dominates((t.score, t.macs), (member.score, member.macs)) for t in complete)
        values = study.trials[member.number].values
        assert values == [member.score, member.macs]
    for trial in complete:  # every complete trial off the front is dominated by a member
        if trial not in front:
            assert any(dominates((m.score, m.macs), (trial.score, trial.macs)) for m in front)
    # The second phase trains members of the front, the most accurate first.
    assert [f.trial for f in result.full][0] == max(front, key=lambda m: (m.score, -m.macs)).number
    assert {f.trial for f in result.full} <= {m.number for m in front}

    tracker = Tracker(config.store.mlflow_uri)
    artifacts = {a.path for a in tracker.client.list_artifacts(result.parent_run_id, "comparison")}
    assert "comparison/pareto.png" in artifacts
    rows = (tracker.download(result.parent_run_id, "pareto.csv", tmp_path / "down")).read_text().splitlines()
    assert len(rows) == 1 + len(front) and rows[0].startswith("trial,widths,frozen_layers,proxy_score,proxy_val_acc")
    assert tracker.get_run(result.parent_run_id).data.metrics["front_size"] == len(front)


def test_pareto_pruning_stops_only_dominated_trials(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "runs", trials=10, objective="pareto", cost="params", pruner="hyperband",
                         sampler="random")
    result = run_search(config, Budget(180, time.monotonic()))
    study = load_only_study(tmp_path / "runs")
    by_number = {t.number: t for t in study.trials}
    assert result.count("PRUNED") >= 1
    for summary in result.trials:
        if summary.state != "PRUNED":
            continue
        trial = by_number[summary.number]
        epoch, accuracy = len(trial.user_attrs["curve"]), trial.user_attrs["curve"][-1]
        earlier = [t for t in study.trials if t.number < summary.number and t.state == TrialState.COMPLETE]
        assert any(t.user_attrs["curve"][epoch - 1] > accuracy and t.values[1] <= summary.total_params
                   for t in earlier), summary


def test_trial_summary_reads_a_multi_objective_trial() -> None:
    import optuna

    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    trial.set_user_attr("widths", "4-8")
    trial.set_user_attr("total_params", 123)
    study.tell(trial, [0.75, 123])
    summary = TrialSummary.from_trial(study.trials[0])
    assert (summary.score, summary.reached, summary.cost("params"), summary.widths) == (0.75, 0.75, 123, (4, 8))


