"""End to end: real searches on tiny synthetic data, then the stores read back."""

import math
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import search.cli
import search.study
import search.trial
from conftest import ROOT, TINY_FLAGS, load_only_study, run_cli, tiny_config
from search.backends.local import LocalTrials
from search.budget import Budget
from search.config import Config, FullTrainConfig, SpaceConfig
from search.data import load
from search.full import ANALYSIS_SHARE, FullPhasePlan
from search.proxy import Candidate, score_candidate
from search.scorers import SCORERS, ScorerSettings
from search.study import run_search
from search.tracking import Tracker


def tracker_for(store: Path) -> Tracker:
    return Tracker(f"sqlite:///{(store / 'mlflow.db').resolve()}")


def study_exists(db: Path) -> bool:
    """Read-only look (no schema created) for a study row in an Optuna SQLite file."""
    if not db.exists():
        return False
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
            return connection.execute("SELECT count(*) FROM studies").fetchone()[0] > 0
    except sqlite3.Error:
        return False


@pytest.mark.slow
def test_search_run_logs_parent_children_and_epochs_and_keeps_the_study(tmp_path: Path) -> None:
    result = run_cli(["run", *TINY_FLAGS, "--budget", "2m", "--trials", "4", "--pruner", "none", "--seed", "3",
                      "--top-k", "0"],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Top candidates" in result.stdout and "search ui --store runs" in result.stdout
    # synthetic's 2,000 training images: the proxy's default 2,000 are all of them
    assert "scoring: proxy, 2 epochs x 2 tops on all 2,000 training images" in result.stdout

    study = load_only_study(tmp_path / "runs")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4

    tracker = tracker_for(tmp_path / "runs")
    runs = tracker.client.search_runs([tracker.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.data.tags["study"] == study.study_name
    # Ties go to the fewer trained parameters, then the earlier trial.
    best = min(trials, key=lambda t: (-t.value, t.user_attrs["trained_params"], t.number))
    assert parent.data.tags["best_widths"] == best.user_attrs["widths"]
    # The score: the proxy's accuracy less 0.008 per halving of the frozen layer's width below 16 (--width-range
    # 4:16:4, --frozen 1) and 0.020 per halving of each trained layer's.
    halvings = {t.number: [math.log2(16 / int(w)) for w in t.user_attrs["widths"].split("-")] for t in trials}
    penalty = {n: 0.008 * h[0] + 0.020 * sum(h[1:]) for n, h in halvings.items()}
    assert all(t.user_attrs["width_penalty"] == pytest.approx(penalty[t.number]) for t in trials)
    assert all(penalty[t.number] > 0 for t in trials if t.user_attrs["widths"] != "16-16-16")
    assert parent.data.metrics["best_score"] == study.best_value == best.value
    assert parent.data.metrics["best_val_acc"] == pytest.approx(best.value + penalty[best.number])
    artifacts = {a.path for a in tracker.client.list_artifacts(parent.info.run_id)}
    assert {"results.csv", "best.json"} <= artifacts

    children = tracker.children(parent.info.run_id)
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in trials}
    for child in children:
        trial = by_run[child.info.run_id]
        params = child.data.params
        assert params["widths"] == trial.user_attrs["widths"] and len(params["widths"].split("-")) == 3
        assert params["frozen_layers"] == "1" and params["seed"] == "3"
        assert int(params["trained_params"]) > 0 and int(params["frozen_params"]) > 0
        assert child.data.tags["phase"] == "proxy"
        for metric in ("epoch_time_s", "images_per_s", "train_loss", "val_acc", "score"):
            history = tracker.client.get_metric_history(child.info.run_id, metric)
            assert sorted(m.step for m in history) == [1, 2]
        accuracy = {m.step: m.value for m in tracker.client.get_metric_history(child.info.run_id, "val_acc")}
        scores = {m.step: m.value for m in tracker.client.get_metric_history(child.info.run_id, "score")}
        assert scores == pytest.approx({step: value - penalty[trial.number] for step, value in accuracy.items()})
        assert float(params["width_penalty"]) == trial.user_attrs["width_penalty"]
        assert child.data.metrics["proxy_acc"] == child.data.metrics["val_acc"] == accuracy[2]
        assert child.data.metrics["proxy_score"] == trial.value == pytest.approx(scores[2])
        assert trial.intermediate_values == pytest.approx(scores)  # the pruner saw the scores


def test_a_trial_that_raises_is_failed_everywhere_and_the_search_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def first_call_raises(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom in the trial")
        return score_candidate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(search.trial, "score_candidate", first_call_raises)
    result = run_search(tiny_config(tmp_path / "runs", trials=3), Budget(120, time.monotonic()))
    assert [t.state for t in result.trials] == ["FAIL", "COMPLETE", "COMPLETE"]

    tracker = tracker_for(tmp_path / "runs")
    runs = {r.info.run_id: r for r in tracker.children(result.parent_run_id)}
    failed = runs[result.trials[0].run_id]
    assert failed.info.status == "FAILED" and "boom in the trial" in failed.data.tags["error"]
    assert all(r.info.status != "RUNNING" for r in runs.values())
    assert tracker.get_run(result.parent_run_id).info.status == "FINISHED"


def test_nan_loss_fails_the_trial_without_ending_the_search(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "runs", trials=2)
    from dataclasses import replace

    config = replace(config, proxy=replace(config.proxy, lr=1e30))  # Adam steps of 1e30 overflow at once
    result = run_search(config, Budget(120, time.monotonic()))
    assert [t.state for t in result.trials] == ["FAIL", "FAIL"]
    runs = tracker_for(tmp_path / "runs").children(result.parent_run_id)
    assert [r.info.status for r in runs] == ["FAILED", "FAILED"]
    assert all("DivergedError" in r.data.tags["error"] for r in runs)


@pytest.mark.slow
@pytest.mark.budget
def test_the_command_ends_within_the_budget_plus_ten_percent(tmp_path: Path) -> None:
    budget_s = 40  # imports take 5-10 s of it on a loaded 2-core machine
    start = time.monotonic()
    result = run_cli(["run", *TINY_FLAGS, "--budget", f"{budget_s}s"], cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert elapsed <= 1.1 * budget_s, f"took {elapsed:.1f} s for a {budget_s} s budget"
    # It did use the budget. Not a trial count: how many fit depends on the start-up (imports and a
    # fresh store took 13-17 s of the 40 s on a loaded 2-core machine on 2026-11-28, 5-10 s before).
    assert elapsed >= 0.6 * budget_s, f"ended after {elapsed:.1f} s of a {budget_s} s budget"
    study = load_only_study(tmp_path / "runs")
    assert any(t.state == TrialState.COMPLETE for t in study.trials)
    assert "Full training" in result.stdout  # and the second phase ran inside it
    assert all(t.state != TrialState.RUNNING for t in study.trials)


@pytest.mark.slow
def test_resume_after_sigkill_keeps_finished_trials_and_fails_the_killed_one(tmp_path: Path) -> None:
    # Trials of ~1-2 s (3000 images) so the kill lands inside one.
    (tmp_path / "slow.toml").write_text("[data]\nsynthetic_train = 3000\nsynthetic_val = 300\n")
    args = ["run", "--config", "slow.toml", *TINY_FLAGS, "--pruner", "none", "--proxy-epochs", "3"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "search.cli", *args, "--budget", "10m"], cwd=tmp_path,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "no two finished trials in 240 s"
            time.sleep(0.2)
            if not study_exists(tmp_path / "runs" / "optuna.db"):
                continue  # opening it with Optuna now would race the process creating its schema
            try:
                trials = load_only_study(tmp_path / "runs").get_trials()
            except (ValueError, KeyError):
                continue  # the study is being created
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            if len(complete) >= 2 and trials[-1].state == TrialState.RUNNING and trials[-1].intermediate_values:
                break
        os.kill(process.pid, signal.SIGKILL)  # the process this test started
    finally:
        process.wait(timeout=30)

    before = {t.number: t.value for t in load_only_study(tmp_path / "runs").get_trials()
              if t.state == TrialState.COMPLETE}
    killed = load_only_study(tmp_path / "runs").get_trials()[-1]
    assert killed.state == TrialState.RUNNING
    target = len(before) + 1 + 2  # the killed trial counts as finished (failed) once resumed

    result = run_cli(["run", "--resume", "--trials", str(target), "--budget", "3m", "--device", "cpu",
                      "--top-k", "0"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"resuming after {len(before) + 1} trials" in result.stdout

    study = load_only_study(tmp_path / "runs")
    trials = study.get_trials()
    assert {t.number: t.value for t in trials if t.number in before} == before
    assert trials[killed.number].state == TrialState.FAIL
    assert sum(t.state.is_finished() for t in trials) == target
    assert not [t for t in trials if t.state == TrialState.RUNNING]

    tracker = tracker_for(tmp_path / "runs")
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    runs = {r.info.run_id: r for r in tracker.children(parent_id)}
    assert runs[killed.user_attrs["mlflow_run_id"]].info.status == "FAILED"
    assert all(r.info.status != "RUNNING" for r in runs.values())
    assert tracker.get_run(parent_id).info.status == "FINISHED"
    # The resumed part ran the stored study's settings: 3 proxy epochs on 3-layer nets.
    new = [t for t in trials if t.number > killed.number and t.state == TrialState.COMPLETE]
    assert new and all(len(t.user_attrs["widths"].split("-")) == 3 for t in new)


@pytest.mark.slow
def test_the_second_phase_trains_the_best_candidates_and_records_the_winner(tmp_path: Path) -> None:
    result = run_cli(["run", *TINY_FLAGS, "--budget", "3m", "--trials", "3", "--pruner", "none", "--top-k", "2",
                      "--stages", "2", "--epochs-per-stage", "1", "--analysis-images", "64"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Full training (from scratch)" in result.stdout and "Winner" in result.stdout
    assert re.search(r"Full training of the best \d.* \(from scratch\):", result.stdout)  # as it starts

    study = load_only_study(tmp_path / "runs")
    best_two = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)[:2]
    tracker = tracker_for(tmp_path / "runs")
    parent = tracker.get_run(study.user_attrs["mlflow_parent_run_id"])
    children = tracker.children(parent.info.run_id)
    full = sorted((r for r in children if r.data.tags["phase"] == "full"), key=lambda r: int(r.data.tags["rank"]))
    assert [r.data.params["widths"] for r in full] == [t.user_attrs["widths"] for t in best_two]
    assert [float(r.data.params["proxy_score"]) for r in full] == [t.value for t in best_two]
    for run in full:
        assert run.info.status == "FINISHED" and run.data.tags["state"] == "complete"
        # From scratch (the default): one stage at the target widths, for stages x epochs-per-stage epochs.
        (stage,) = tracker.children(run.info.run_id)
        assert stage.data.tags["stage"] == "1" and stage.data.params["widths"] == run.data.params["widths"]
        assert stage.info.status == "FINISHED" and stage.data.tags["phase"] == "full"
        assert [m.step for m in tracker.client.get_metric_history(stage.info.run_id, "epoch_time_s")] == [1, 2]
        assert "learned_widths" in run.data.params and "analysis_time_s" in run.data.metrics
        pictures = {a.path for a in tracker.client.list_artifacts(run.info.run_id, "analysis")}
        assert {"analysis/filters_layer1.png", "analysis/kernels_layer1.png", "analysis/feature_maps_layer1.png",
                "analysis/widths.png"} <= pictures
        assert [a.path for a in tracker.client.list_artifacts(run.info.run_id, "model")] == ["model/model.pt"]

    winner = max(full, key=lambda r: r.data.metrics["val_acc"])
    assert parent.data.tags["winner_run_id"] == winner.info.run_id
    assert f"Keep it: search export {winner.info.run_id}" in " ".join(result.stdout.split())
    assert parent.data.tags["winner_widths"] == winner.data.params["widths"]
    assert parent.data.metrics["winner_val_acc"] == winner.data.metrics["val_acc"]
    assert 0 < parent.data.metrics["proxy_phase_s"] < parent.data.metrics["search_time_s"]
    # What a trial cost against a full training of this search, from the times the runs recorded.
    trial_s = [t.user_attrs["seconds"] for t in study.trials]
    full_s = [r.data.metrics["train_time_s"] for r in full]
    assert parent.data.metrics["mean_trial_s"] == pytest.approx(sum(trial_s) / len(trial_s))
    assert parent.data.metrics["mean_full_train_s"] == pytest.approx(sum(full_s) / len(full_s))
    assert parent.data.metrics["trial_cost_share"] == pytest.approx(sum(trial_s) / sum(full_s) * 2 / 3)
    by_widths = {t.user_attrs["widths"]: t.user_attrs["seconds"] for t in best_two}
    own = [by_widths[r.data.params["widths"]] / r.data.metrics["train_time_s"] for r in full]
    assert parent.data.metrics["complete_trial_cost_share"] == pytest.approx(sum(own) / len(own))
    line = " ".join(result.stdout.split())
    assert f"Cost of a trial: {sum(trial_s) / 3:.1f} s on average (3 trials;" in line
    assert f"{parent.data.metrics['trial_cost_share']:.3f} of a full training here" in line
    for run in full:  # the learned widths, with the number of images they were measured on
        images = int(run.data.metrics["analysis_images"])
        assert f"learned {run.data.params['learned_widths']} ({images} images)" in line
    assert {"full_results.csv", "winner.json"} <= {a.path for a in tracker.client.list_artifacts(parent.info.run_id)}
    # The parent run carries the pictures that compare trials and candidates.
    assert {"comparison/trial_scores.png", "comparison/epoch_times.png", "comparison/widths.png"} <= {
        a.path for a in tracker.client.list_artifacts(parent.info.run_id, "comparison")}
    for trial in study.trials:  # each trial's mean epoch time, as its run logged it
        history = tracker.client.get_metric_history(trial.user_attrs["mlflow_run_id"], "epoch_time_s")
        assert trial.user_attrs["epoch_s"] == pytest.approx(sum(m.value for m in history) / len(history))


def test_a_search_can_score_trials_with_a_zero_cost_scorer(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "runs", scorer="params")
    result = run_search(config, Budget(120, time.monotonic()))
    assert [t.state for t in result.trials] == ["COMPLETE"] * 3
    data = load(config.data, seed=0)
    settings = ScorerSettings(config.model, config.proxy, config.search.seed)
    for trial in result.trials:
        assert trial.score == SCORERS["params"](Candidate(trial.widths, 1), data, settings)


def test_no_trial_is_pruned_before_one_has_completed() -> None:
    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return True

    study = optuna.create_study(direction="maximize", pruner=search.study.AfterFirstComplete(AlwaysPrune()))
    first = study.ask()
    first.report(0.1, step=1)
    assert not first.should_prune()  # nothing finished yet: a bad start still gets an answer
    study.tell(first, 0.1)
    second = study.ask()
    second.report(0.05, step=1)
    assert second.should_prune()


@pytest.mark.slow
@pytest.mark.budget
def test_a_short_search_starts_from_the_middle_profile_and_ends_with_an_answer(tmp_path: Path) -> None:
    flags = [f for f in TINY_FLAGS]
    flags[flags.index("--width-range") : flags.index("--width-range") + 2] = ["--width-choices", "4,8,16"]
    result = run_cli(["run", *flags, "--budget", "20s"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = load_only_study(tmp_path / "runs")
    assert study.trials[0].params == {"width_1": 8, "width_2": 8, "width_3": 8}
    assert study.trials[0].state == TrialState.COMPLETE and study.best_trial is not None
    assert "Full training" in result.stdout


@pytest.mark.slow
def test_a_budget_spent_in_start_up_still_ends_with_one_scored_trial_and_says_the_overrun(tmp_path: Path) -> None:
    # One second is gone in imports alone: the whole search runs past its budget. The first trial
    # still trains to its last epoch; nothing else starts, and the last line says by how much.
    result = run_cli(["run", *TINY_FLAGS, "--budget", "1s"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = load_only_study(tmp_path / "runs")
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == [1, 2]
    out = " ".join(result.stdout.split())  # the console wraps long lines
    assert "No trial completed" not in out
    assert "No time was left to train in full: the best profile by the proxy is 8-8-8" in out
    # the command to paste carries the run's options that train takes too, and train accepts it
    hint = out.split("Train it with: ")[1].split(" 1 complete")[0]
    assert hint == "search train --widths 8-8-8 --batch-size 64 --dataset synthetic --device cpu"
    assert search.cli.build_parser().parse_args(shlex.split(hint)[1:]).command == "train"
    assert "past the 1 s budget: no trial had completed by then, and a search ends with an answer" in out
    tracker = tracker_for(tmp_path / "runs")
    parent = tracker.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["best_widths"] == "8-8-8"
    assert parent.data.metrics["budget_overrun_s"] > 0
    assert parent.data.tags["full_candidates"] == "0 of the top 1: the budget fit no more"  # one scored


def test_a_profile_proposed_again_is_not_trained_again(tmp_path: Path) -> None:
    # 2 layers of width 4 or 8: 4 profiles. Asking for 6 trained trials cannot be met: once the
    # 4 are scored every proposal is a repeat, and the search stops after 100 in a row.
    space = SpaceConfig(layers=2, width_choices=None, width_min=4, width_max=8, width_step=4, frozen_layers=(1,))
    config = replace(tiny_config(tmp_path / "runs", trials=6, sampler="random"), space=space).validate()
    result = run_search(config, Budget(120, time.monotonic()))
    trained = [t for t in result.trials if t.same_as is None]
    repeats = [t for t in result.trials if t.same_as is not None]
    assert len(trained) == 4 and len({t.widths for t in trained}) == 4
    assert len(repeats) >= 100
    by_number = {t.number: t for t in result.trials}
    for repeat in repeats:
        first = by_number[repeat.same_as]
        assert repeat.state == "COMPLETE" and repeat.score == first.score and repeat.widths == first.widths
        assert repeat.run_id is None and repeat.seconds == 0.0
    assert len(result.completed()) == 4  # listed once
    tracker = tracker_for(tmp_path / "runs")
    assert len(tracker.children(result.parent_run_id)) == 4  # no MLflow run for a repeat


def test_the_proxy_phase_goes_on_into_the_time_the_full_phase_will_not_need(tmp_path: Path) -> None:
    data = load(tiny_config(tmp_path / "runs").data)
    config = replace(tiny_config(tmp_path / "runs", top_k=2), full=FullTrainConfig(stages=1, epochs_per_stage=1))
    study = optuna.create_study(direction="maximize")
    for widths, score in [("8-8-8", 0.5), ("4-4-4", 0.7), ("16-16-16", 0.6)]:
        study.add_trial(optuna.trial.create_trial(value=score, user_attrs={
            "widths": widths, "frozen_layers": 1, "seconds": 1.0, "trained_params": 100}))
    tracker = tracker_for(tmp_path / "runs")

    def local(whole: Budget, config: Config) -> tuple[LocalTrials, FullPhasePlan]:
        plan = FullPhasePlan(config, data)
        return LocalTrials(study, config, data, tracker, "parent", whole.first(0.6), lambda event: None,
                           whole_budget=whole, full_plan=plan), plan

    # The 60 s share of a 100 s budget not yet spent: it stands, and nothing is measured.
    trials, plan = local(Budget(100.0, time.monotonic()), config)
    assert trials.current_budget().total_s == 60.0 and plan.seconds == {}

    # Spent (61 s gone): lengthened to leave what the best two need (a fraction of a second each), plus a margin.
    trials, plan = local(Budget(100.0, time.monotonic() - 61), config)
    budget = trials.current_budget()
    needs, kept = plan.needs_s(study.trials), plan.kept_s(study.trials)
    assert set(plan.seconds) == {(4, 4, 4), (16, 16, 16)}  # the best two only, each measured once
    assert needs == pytest.approx([plan.seconds[w] / (1 - ANALYSIS_SHARE) for w in [(4, 4, 4), (16, 16, 16)]])
    assert kept == pytest.approx(sum(needs) + max(needs))  # a margin: one more of the largest
    assert 0 < kept < 20 and budget.total_s == pytest.approx(100.0 - Budget(100.0, 0).reserve_s - kept)
    assert budget.remaining_s() > 10

    # --slim keeps time for the winner's fine-tuning too: 4 epochs at the largest one's mean epoch.
    slim = replace(config, search=replace(config.search, slim=True))
    trials, plan = local(Budget(100.0, time.monotonic() - 61), slim)
    needs = plan.needs_s(study.trials)
    epoch_s = max(needs) * (1 - ANALYSIS_SHARE) / (slim.full.stages * slim.full.epochs_per_stage)
    assert plan.kept_s(study.trials) == pytest.approx(sum(needs) + max(needs) + slim.full.fine_tune_epochs * epoch_s)

    # Best candidates that need more than the share leaves: the share stands.
    slow = replace(config, full=FullTrainConfig(stages=1, epochs_per_stage=100_000))
    trials, plan = local(Budget(100.0, time.monotonic() - 61), slow)
    assert trials.current_budget().total_s == 60.0 and sum(plan.needs_s(study.trials)) > 40


def test_the_result_says_when_the_model_kept_is_a_narrower_stages(capsys: pytest.CaptureFixture[str]) -> None:
    from search.results import FullSummary, SearchResult

    full = (FullSummary(1, 0, (32, 64), 0.9, "COMPLETE", 0.95, (10, 20), 5000, 6.0, "wide", None, (0.1, 0.2), (32, 64)),
            FullSummary(2, 1, (16, 64), 0.8, "COMPLETE", 0.97, (7, 15), 1200, 4.0, "kept", None, (0.1, 0.2), (8, 32)))
    result = SearchResult("s", "p", Path("runs"), "sqlite:///runs/mlflow.db", (), 10.0, full=full, full_planned=2)
    search.cli.print_result(result, search.cli.build_parser().parse_args(["run"]), "partial")
    out = " ".join(capsys.readouterr().out.split())
    assert "Winner (* above): 16-64 (kept as 8-32: its best epoch), full val_acc 0.9700" in out
    assert "Full training (progressive widening, partial)" in out
    search.cli.print_result(result, search.cli.build_parser().parse_args(["run"]), "none")
    assert "Full training (from scratch)" in " ".join(capsys.readouterr().out.split())
    assert "32-64 (kept" not in out  # the wide one kept its own widths
    assert full[1].row()["kept_widths"] == "8-32"
    assert "in full: the budget fit no more" not in out  # both of the two it picked were trained
    search.cli.print_result(replace(result, full_planned=3), search.cli.build_parser().parse_args(["run"]), "none")
    assert "Trained 2 of the top 3 in full: the budget fit no more" in " ".join(capsys.readouterr().out.split())
