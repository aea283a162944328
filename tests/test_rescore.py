"""benchmarks.rescore recomputes the search's score from stored validate samples: it must agree
with what validate itself computed."""

import csv
import json
import shutil

import pytest

from benchmarks.rescore import Sample, load_all, logged_weights, rescore, restore, unlike_logged, validate_config
from models import format_widths

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


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_restore_fills_the_cache_validate_reads_for_the_sample_it_draws(sample: Sample, tmp_path) -> None:
    """The stored command draws the stored candidates again, and every full training it needs is
    in the restored cache (so validate with these arguments trains proxies only)."""
    from search.validate import CACHE_FILE, FullTrainingCache, recipe_key, sample_profiles, training_seeds

    args, count = restore(sample.name, tmp_path / "store")
    config = validate_config(args)
    profiles = sample_profiles(config.space, config.fidelity.candidates, config.search.seed, config.fidelity.sample)
    assert sorted(profiles) == sorted(sample.widths)
    cache = FullTrainingCache(tmp_path / "store" / CACHE_FILE)  # read back from the file
    assert count == len(cache.entries) == len(profiles) * config.fidelity.full_seeds
    rows = {r["widths"]: r for r in csv.DictReader((sample.folder / "candidates.csv").open())}
    for widths in profiles:
        accuracies = [cache.get(recipe_key(config, widths, seed))["val_acc"] for seed in training_seeds(config)]
        assert sum(accuracies) / len(accuracies) == pytest.approx(float(rows[format_widths(widths)]["full_val_acc"]))


def test_restore_names_the_stored_samples_when_one_is_unknown(tmp_path) -> None:
    with pytest.raises(SystemExit, match="no stored sample 'nope'.*textures"):
        restore("nope", tmp_path)


def test_restore_refuses_a_sample_trained_under_another_recipe(tmp_path) -> None:
    sample = SAMPLES[0]
    copy = tmp_path / "kept" / sample.name
    shutil.copytree(sample.folder, copy)
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "recipe": "0" * 24}))
    with pytest.raises(SystemExit, match="another recipe"):
        restore(sample.name, tmp_path / "store", folder=tmp_path / "kept")
    assert not (tmp_path / "store").exists()  # nothing written
