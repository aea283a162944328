from dataclasses import replace

import pytest
import torch

from search.config import ModelConfig, ProxyConfig
from search.data import TensorData, make_synthetic
from search.proxy import Candidate, build_model, cached_features, frozen_features, lower_key, score_candidate
from search.train import EpochMetrics

MODEL = ModelConfig(hidden=(16,))


def test_cached_features_equal_features_computed_on_the_fly(tiny_data: TensorData) -> None:
    model = build_model(Candidate((4, 8, 8), 2), tiny_data, MODEL, seed=0)
    cached = frozen_features(model, tiny_data.x_train)
    with torch.no_grad():
        on_the_fly = torch.cat([model.lower()(tiny_data.x_train[i : i + 7]) for i in range(0, 256, 7)])
    assert cached.shape == (256, 8, 4, 4)
    torch.testing.assert_close(cached, on_the_fly)


def test_cached_and_uncached_trials_learn_the_same(tiny_data: TensorData) -> None:
    candidate = Candidate((4, 8, 8), 2)
    cached = score_candidate(candidate, tiny_data, MODEL, ProxyConfig(epochs=2, batch_size=32), seed=0)
    uncached = score_candidate(candidate, tiny_data, MODEL, ProxyConfig(epochs=2, batch_size=32, cache_mb=0), seed=0)
    assert cached.cached and not uncached.cached
    for a, b in zip(cached.history, uncached.history, strict=True):
        assert abs(a.train_loss - b.train_loss) < 1e-4
        assert abs(a.val_acc - b.val_acc) < 1e-2


def test_score_is_reported_after_every_epoch_and_is_the_last_val_acc(tiny_data: TensorData) -> None:
    seen: list[EpochMetrics] = []
    result = score_candidate(Candidate((4, 8, 8), 1), tiny_data, MODEL, ProxyConfig(epochs=3, batch_size=64), 0,
                             on_epoch=seen.append)
    assert [m.epoch for m in seen] == [1, 2, 3]
    assert result.score == seen[-1].val_acc
    assert result.trained_params + result.frozen_params == sum(
        p.numel() for p in build_model(Candidate((4, 8, 8), 1), tiny_data, MODEL, 0).parameters()
    )


def test_proxy_learns_something(tiny_data: TensorData) -> None:
    result = score_candidate(Candidate((8, 16, 16), 2), tiny_data, MODEL, ProxyConfig(epochs=6, batch_size=32), 0)
    assert result.score > 0.4  # 4 classes: chance is 0.25


def test_only_the_top_trains(tiny_data: TensorData) -> None:
    result = score_candidate(Candidate((4, 8, 8), 2), tiny_data, MODEL, ProxyConfig(epochs=1), 0)
    full = score_candidate(Candidate((4, 8, 8), 0), tiny_data, MODEL, ProxyConfig(epochs=1), 0)
    assert result.frozen_params > 0 and full.frozen_params == 0
    assert result.trained_params + result.frozen_params == full.trained_params


def test_a_profile_that_collapsed_under_the_old_proxy_now_learns() -> None:
    # A width-4 then width-2 trained layer over 128 wide random features. The old proxy (raw
    # frozen features, He-scaled classifier, constant rate, no warm-up) ended at 0.242 here,
    # loss stuck at ln 4: Adam's first steps had killed every ReLU of the narrow layers.
    data = make_synthetic(512, 256, num_classes=4, image_size=16, seed=0)
    # One top alone (the mean of several could hide one that collapsed).
    result = score_candidate(Candidate((16, 128, 4, 32, 2), 2), data, ModelConfig(), ProxyConfig(epochs=4, replicas=1),
                             seed=0)
    assert result.score > 0.5 and result.history[-1].train_loss < 1.0  # chance is 0.25


def test_the_top_trains_on_the_first_train_images_only(tiny_data: TensorData) -> None:
    result = score_candidate(Candidate((4, 8, 8), 2), tiny_data, MODEL, ProxyConfig(epochs=1, train_images=64), 0)
    full = score_candidate(Candidate((4, 8, 8), 2), tiny_data, MODEL, ProxyConfig(epochs=1), 0)
    assert result.history[0].images_per_s * result.history[0].epoch_time_s == pytest.approx(64)
    assert full.history[0].images_per_s * full.history[0].epoch_time_s == pytest.approx(256)


def test_trials_sharing_lower_widths_share_their_frozen_features(tiny_data: TensorData) -> None:
    proxy = ProxyConfig(epochs=2, batch_size=32)
    first = score_candidate(Candidate((4, 8, 8), 2), tiny_data, MODEL, proxy, seed=0)
    same_lower = score_candidate(Candidate((4, 8, 16), 2), tiny_data, MODEL, proxy, seed=0)
    other_lower = score_candidate(Candidate((8, 8, 16), 2), tiny_data, MODEL, proxy, seed=0)
    other_seed = score_candidate(Candidate((4, 8, 16), 2), tiny_data, MODEL, proxy, seed=1)
    assert [r.features_reused for r in (first, same_lower, other_lower, other_seed)] == [False, True, False, False]
    # Reused features train exactly as freshly computed ones: the same trial on a copy of the
    # data with nothing kept (the lower random weights depend only on seed and lower widths).
    fresh = score_candidate(Candidate((4, 8, 16), 2), make_synthetic(256, 128, num_classes=4, image_size=8, seed=0),
                            MODEL, proxy, seed=0)
    assert not fresh.features_reused
    assert [m.train_loss for m in fresh.history] == [m.train_loss for m in same_lower.history]
    assert fresh.score == same_lower.score


def test_kept_features_stay_within_cache_mb(tiny_data: TensorData) -> None:
    one_trial_mb = (256 + 128) * 8 * 4 * 4 * 4 / 2**20  # train + val images x 8 channels x 4x4 floats
    proxy = ProxyConfig(epochs=1, cache_mb=1.5 * one_trial_mb)
    for widths in ((4, 8, 8), (8, 8, 8), (4, 8, 8)):
        score_candidate(Candidate(widths, 2), tiny_data, MODEL, proxy, seed=0)
        assert tiny_data.derived.nbytes <= proxy.cache_mb * 2**20
    # (4, 8) was pushed out by (8, 8), so its third trial computed it again
    again = score_candidate(Candidate((8, 8, 8), 2), tiny_data, MODEL, proxy, seed=0)
    assert not again.features_reused


def test_lr_fan_in_slows_only_trained_layers_that_read_many_channels(tiny_data: TensorData) -> None:
    def losses(widths: tuple[int, ...], lr_fan_in: int | None) -> list[float]:
        proxy = ProxyConfig(epochs=2, batch_size=32, lr_fan_in=lr_fan_in)
        return [m.train_loss for m in score_candidate(Candidate(widths, 1), tiny_data, MODEL, proxy, 0).history]

    # the trained layers read 4 and 8 channels: under the reference, one rate either way
    assert losses((4, 8, 8), 8) == losses((4, 8, 8), None)
    # the first trained layer reads 32 frozen channels: it learns at half the rate with 8
    assert losses((32, 8, 8), 8) != losses((32, 8, 8), None)


def test_frozen_per_replica_gives_each_top_its_own_random_frozen_layers(tiny_data: TensorData) -> None:
    candidate = Candidate((4, 8, 8), 2)
    shared = ProxyConfig(epochs=2, batch_size=32)
    own = replace(shared, frozen_per_replica=True)
    result = score_candidate(candidate, tiny_data, MODEL, own, seed=0)
    assert result.cached and tiny_data.derived.nbytes == 2 * (256 + 128) * 8 * 4 * 4 * 4  # two sets of 8 channels
    # Side by side: replica 0 reads seed 0's frozen features, replica 1 seed 1's.
    key = tuple(lower_key(build_model(candidate, tiny_data, MODEL, s), own) for s in (0, 1))
    (x_train, x_val), kept = tiny_data.derived.get(key, lambda: pytest.fail("the features were not kept"), 1e9)
    for s, channels in ((0, slice(0, 8)), (1, slice(8, 16))):
        model = build_model(candidate, tiny_data, MODEL, s)
        expected = cached_features(model, tiny_data.x_train, tiny_data.x_val, True)
        torch.testing.assert_close(x_train[:, channels], expected[0])
        torch.testing.assert_close(x_val[:, channels], expected[1])
    # Computed per batch instead, the tops learn the same; shared features train differently.
    uncached = score_candidate(candidate, tiny_data, MODEL, replace(own, cache_mb=0), seed=0)
    assert not uncached.cached
    for a, b in zip(result.history, uncached.history, strict=True):
        assert abs(a.train_loss - b.train_loss) < 1e-4
    def fresh() -> TensorData:  # the same data with nothing kept
        return make_synthetic(256, 128, num_classes=4, image_size=8, seed=0)

    one_set = score_candidate(candidate, fresh(), MODEL, shared, 0)
    assert [m.train_loss for m in one_set.history] != [m.train_loss for m in result.history]
    # One replica has one set of frozen layers either way.
    alone = [score_candidate(candidate, fresh(), MODEL, replace(proxy, replicas=1), 0).score for proxy in (shared, own)]
    assert alone[0] == alone[1]
