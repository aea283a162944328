"""The parent run's comparison pictures and the trial facts they draw."""

from pathlib import Path

import optuna
from matplotlib.image import imread

from search.pictures import search_comparison
from search.results import FullSummary, TrialSummary


def summaries() -> tuple[list[TrialSummary], list[FullSummary]]:
    study = optuna.create_study(direction="maximize")
    for number, (widths, values, prune) in enumerate([("4-8-16", [0.5, 0.7], False), ("8-8-8", [0.3], True),
                                                      ("16-16-16", [0.6, 0.8], False)]):
        trial = study.ask()
        trial.set_user_attr("widths", widths)
        trial.set_user_attr("trained_params", 1000 * (number + 1))
        trial.set_user_attr("epoch_s", 0.1 * (number + 1))
        for step, value in enumerate(values, start=1):
            trial.report(value, step)
        if prune:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, values[-1])
    trials = [TrialSummary.from_trial(t) for t in study.trials]
    full = [FullSummary(1, 2, (16, 16, 16), 0.8, "COMPLETE", 0.9, (12, 16, 9), 3000, 5.0, "run", None, (0.2, 0.5)),
            FullSummary(2, 0, (4, 8, 16), 0.7, "FAIL", None, None, None, 1.0, "run2", "boom")]
    return trials, full


def test_a_pruned_trial_is_summarised_at_the_score_it_had_reached() -> None:
    trials, _ = summaries()
    assert [t.widths for t in trials] == [(4, 8, 16), (8, 8, 8), (16, 16, 16)]
    assert [(t.state, t.score, t.reached) for t in trials] == [
        ("COMPLETE", 0.7, 0.7), ("PRUNED", None, 0.3), ("COMPLETE", 0.8, 0.8)]
    assert [t.epoch_s for t in trials] == [0.1, 0.2, 0.30000000000000004]


def test_the_search_comparison_draws_scores_epoch_times_and_widths(tmp_path: Path) -> None:
    trials, full = summaries()
    written = search_comparison(trials, full, "proxy", tmp_path)
    assert [p.name for p in written] == ["trial_scores.png", "epoch_times.png", "widths.png"]
    heights = [imread(p).shape[0] for p in written]
    assert all(height > 100 for height in heights)
    # No full phase: no widths picture, the rest still drawn.
    assert [p.name for p in search_comparison(trials, [], "synflow", tmp_path / "none")] == [
        "trial_scores.png", "epoch_times.png"]
