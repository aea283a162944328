"""benchmarks.rescore recomputes the search's score from stored validate samples: it must agree
with what validate itself computed."""

import csv

import pytest

from benchmarks.rescore import Sample, load_all, logged_weights, rescore, unlike_logged

SAMPLES = load_all()


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_stored_penalty_is_the_search_score_validate_logged(sample: Sample) -> None:
    rows = list(csv.DictReader((sample.folder / "candidates.csv").open()))
    assert unlike_logged(rows, sample.widest, logged_weights(sample)) is None
    assert unlike_logged(rows, sample.widest, (0.05,) * len(sample.widest)) is not None  # other weights do not match


def test_rescore_ranks_by_accuracy_less_penalty() -> None:
    widths = ((4, 4), (8, 8), (8, 4))
    sample = Sample("toy", widths, target=(0.1, 0.3, 0.2), proxy=((0.5, 0.4, 0.45),), widest=(8, 8), frozen=1,
                    meta={})
    assert rescore(sample, (0.0, 0.0)).rhos[0] < 0  # accuracy alone ranks the narrowest first
    result = rescore(sample, (0.1, 0.1))  # 0.3 for (4, 4), 0 for (8, 8), 0.1 for (8, 4): the target's order
    assert result.rhos[0] == pytest.approx(1.0) and result.regrets[0] == 0.0
