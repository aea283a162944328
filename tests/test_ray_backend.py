"""Ray backend pieces that need no cluster: token lookup, tracking check, GPU warning, the driver's searcher."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import ray
from optuna.trial import TrialState

from search.backends import ray_tune
from search.budget import Budget
from search.config import Config, ConfigError, RayConfig, SpaceConfig, StoreConfig
from search.space import starting_params
from search.tracking import Tracker


def test_the_token_comes_from_the_environment_then_the_token_file(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ray_tune.find_auth_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    assert ray_tune.find_auth_token() == "from-home"
    (tmp_path / "elsewhere").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "elsewhere"))
    assert ray_tune.find_auth_token() == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert ray_tune.find_auth_token() == "from-env"


def cluster_config(tmp_path: Path, tracking_uri: str | None = None) -> Config:
    return Config(ray=RayConfig(address="auto"), store=StoreConfig(path=tmp_path, tracking_uri=tracking_uri))


def test_a_cluster_with_other_nodes_refuses_the_local_tracking_store(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = [{"NodeManagerAddress": "127.0.0.1", "Alive": True}, {"NodeManagerAddress": "10.1.2.3", "Alive": True},
             {"NodeManagerAddress": "10.9.9.9", "Alive": False}]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)  # what a two-machine cluster reports
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    with pytest.raises(ConfigError, match=r"workers on 10\.1\.2\.3 cannot write the local tracking store.*deploy/"):
        ray_tune.check_tracking_reachable(cluster_config(tmp_path))
    ray_tune.check_tracking_reachable(cluster_config(tmp_path, "http://mlflow:5000"))  # a server: fine
    monkeypatch.setattr(ray, "nodes", lambda: nodes[:1])
    ray_tune.check_tracking_reachable(cluster_config(tmp_path))  # one machine: the SQLite store is fine


def test_fractional_gpus_warn_whole_ones_do_not() -> None:
    said: list[str] = []
    for gpus in (0.0, 1.0, 2.0, 0.25):
        ray_tune.warn_fractional_gpus(Config(ray=RayConfig(gpus_per_trial=gpus)), said.append)
    assert len(said) == 1 and "0.25" in said[0] and "without isolation" in said[0] and "about 4 trials" in said[0]


def test_the_driver_asks_and_tells_the_study_as_the_local_backend_does(tmp_path: Path) -> None:
    """StudySearch without a cluster: Tune's calls in, the Optuna study's records out."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", direction="maximize")
    space = SpaceConfig(layers=2, width_choices=(4, 8), frozen_layers=(1,))
    study.enqueue_trial(starting_params(space))
    budget = Budget(600, time.monotonic())
    ended: list[object] = []
    searcher = ray_tune.make_searcher_class()(study, space, "params", 2, budget, budget, None, ended.append,
                                              lambda number: None)
    identity = {"widths": "4-8", "frozen_layers": 1, "total_params": 100, "trained_params": 60, "frozen_params": 40,
                "macs": 1000, "latency_ms": 1.0, "mlflow_run_id": "r", "cost": 100, "width_penalty": 0.05}
    epoch = {"train_loss": 1.0, "val_loss": 1.0, "epoch_time_s": 0.1, "eval_time_s": 0.01, "images_per_s": 10.0}

    first = searcher.suggest("a")  # the enqueued middle profile, as locally
    assert first["number"] == 0 and first["frozen_layers"] == 1 and len(first["widths"]) == 2
    identity["widths"] = "-".join(map(str, first["widths"]))
    # The score is the accuracy less the trial's parameter penalty (search.trial.score_penalty, on the worker).
    searcher.on_trial_result("a", {**identity, **epoch, "epoch": 1, "val_acc": 0.55, "score": 0.5})
    searcher.on_trial_complete("a", {**identity, **epoch, "epoch": 2, "val_acc": 0.8, "score": 0.75, "complete": True,
                                     "seconds": 2.0, "cached": True})
    searcher.suggest("b")
    searcher.on_trial_result("b", {**identity, **epoch, "epoch": 1, "val_acc": 0.3, "score": 0.25})
    searcher.on_trial_complete("b", {**identity, **epoch, "epoch": 1, "val_acc": 0.3, "score": 0.25})  # ASHA stopped it
    searcher.suggest("c")
    searcher.on_trial_complete("c", None, error=True)  # raised, or its worker was lost
    searcher.suggest("d")
    searcher.on_trial_complete("d", {**identity, "epoch": 0, "val_acc": 0.0, "score": 0.0,
                                     "rejected": "params 100 > 50"})

    trials = [t for t in study.get_trials() if "same_as" not in t.user_attrs]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                             TrialState.PRUNED]
    assert trials[0].value == 0.75 and trials[0].intermediate_values == {1: 0.5, 2: 0.75}
    assert trials[0].user_attrs["mlflow_run_id"] == "r" and trials[0].user_attrs["cached"] is True
    assert trials[0].user_attrs["width_penalty"] == 0.05
    assert trials[1].intermediate_values == {1: 0.25} and "error" in trials[2].user_attrs
    assert trials[3].user_attrs["rejected"] == "params 100 > 50"
    # A profile scored before takes its score without a Tune trial (local backend's same_as).
    repeats = [t for t in study.get_trials() if "same_as" in t.user_attrs]
    assert all(t.state == TrialState.COMPLETE and t.value == 0.75 for t in repeats)
    assert len(ended) == len(repeats)


def test_a_trial_whose_worker_is_lost_before_its_first_report_is_linked_to_its_run_and_failed(tmp_path: Path) -> None:
    """The worker opened the trial's MLflow run, then was lost before any report reached the
    driver: Tune calls the searcher (error) and then the callbacks; the run is found by its tags."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", direction="maximize",
                                study_name="s-1")
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")
    parent = tracker.start_run("search", tags={"study": "s-1"})
    budget = Budget(600, time.monotonic())
    space = SpaceConfig(layers=2, width_choices=(4, 8), frozen_layers=(1,))
    searcher = ray_tune.make_searcher_class()(study, space, "params", 2, budget, budget, None, lambda event: None,
                                              partial(tracker.trial_run, "s-1"))
    closer = ray_tune.make_callback_class()(tracker, study, searcher, lambda event: None, 2)
    first, second = searcher.suggest("a"), searcher.suggest("b")
    other = tracker.start_run("trial-0", parent_id=parent, tags={"phase": "proxy", "study": "other", "trial": 0})
    lost = tracker.start_run(f"trial-{second['number']}", parent_id=parent,  # as search.trial.run_trial opens it
                             tags={"phase": "proxy", "study": "s-1", "trial": second["number"]})
    for trial_id in ("a", "b"):  # a: lost before it opened its run; b: after
        searcher.on_trial_complete(trial_id, None, error=True)
        closer.on_trial_error(0, [], SimpleNamespace(trial_id=trial_id, error_file=None))
    trials = {t.number: t for t in study.get_trials()}
    assert trials[first["number"]].state == trials[second["number"]].state == TrialState.FAIL
    assert "mlflow_run_id" not in trials[first["number"]].user_attrs
    assert trials[second["number"]].user_attrs["mlflow_run_id"] == lost
    run = tracker.get_run(lost)
    assert run.info.status == "FAILED" and run.data.tags["state"] == "failed" and run.data.tags["error"]
    assert tracker.get_run(other).info.status == "RUNNING"  # another study's trial 0 is not touched


def test_a_ray_shutdown_that_raises_still_closes_the_parent_run_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray is shut down after the trials are recorded; if that raises, the parent run must not be
    left RUNNING, and the search's result stands with the error beside it."""
    from conftest import tiny_config
    from search.study import run_search

    def broken_shutdown() -> None:
        raise RuntimeError("the raylet is gone")

    monkeypatch.setattr(ray_tune, "connect", lambda config: None)  # no Ray is started: only its teardown fails
    monkeypatch.setattr(ray_tune, "check_tracking_reachable", lambda config: None)
    monkeypatch.setattr(ray_tune.RayTrials, "run", lambda self: None)
    monkeypatch.setattr(ray, "shutdown", broken_shutdown)
    result = run_search(tiny_config(tmp_path / "runs", backend="ray"), Budget(60, time.monotonic()))

    assert result.teardown_error == "RuntimeError: the raylet is gone"
    parent = Tracker(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}").get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ray_shutdown_error"] == "RuntimeError: the raylet is gone"
