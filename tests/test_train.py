import pytest
import torch
from torch import nn

from search.train import DivergedError, EpochMetrics, Replicas, TrainSettings, evaluate, fit


def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(128, 4, generator=generator)
    return x, (x[:, 0] > 0).long()


def test_every_epoch_is_timed_evaluated_and_handed_to_the_callback() -> None:
    x, y = data()
    seen: list[EpochMetrics] = []
    torch.manual_seed(0)  # its initial weights: unseeded, they followed the tests run before it (0.883 once in CI)
    history = fit(nn.Linear(4, 2), x, y, x, y, TrainSettings(epochs=3, batch_size=32, lr=0.1), on_epoch=seen.append)
    assert history == seen and [m.epoch for m in seen] == [1, 2, 3]
    assert all(m.epoch_time_s > 0 and m.images_per_s == pytest.approx(128 / m.epoch_time_s) for m in seen)
    assert seen[-1].val_acc > 0.9 and seen[-1].train_loss < seen[0].train_loss


def test_nan_loss_raises_diverged() -> None:
    x, y = data()
    with pytest.raises(DivergedError, match="epoch 1"):
        fit(nn.Linear(4, 2), x * float("nan"), y, x, y, TrainSettings(epochs=2, batch_size=32, lr=0.1))


def test_a_callback_that_raises_stops_training() -> None:
    x, y = data()
    seen: list[int] = []

    def stop_after_first(m: EpochMetrics) -> None:
        seen.append(m.epoch)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(nn.Linear(4, 2), x, y, x, y, TrainSettings(epochs=5, batch_size=32, lr=0.1), on_epoch=stop_after_first)
    assert seen == [1]


def test_evaluate_counts_accuracy_exactly() -> None:
    model = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0], [1.0]]))
    x = torch.tensor([[1.0], [-1.0], [2.0], [3.0]])
    y = torch.tensor([1, 0, 0, 1])
    _, accuracy = evaluate(model, x, y, batch_size=3)
    assert accuracy == 0.75


def test_same_seed_same_training() -> None:
    x, y = data()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        runs.append(fit(model, x, y, x, y, TrainSettings(epochs=2, batch_size=16, lr=0.1, seed=5))[-1].train_loss)
    assert runs[0] == runs[1]


def test_warm_up_starts_below_the_learning_rate() -> None:
    x, y = torch.randn(32, 4), torch.randint(2, (32,))

    def first_step_change(warmup: float) -> float:
        module = nn.Linear(4, 2)
        torch.nn.init.zeros_(module.weight)
        fit(module, x, y, x, y, TrainSettings(epochs=1, batch_size=32, lr=0.1, warmup_epochs=warmup))
        return module.weight.abs().max().item()  # Adam's first step moves each weight by about lr

    assert first_step_change(0.0) == pytest.approx(0.1, rel=1e-3)
    assert first_step_change(1.0) == pytest.approx(0.05, rel=1e-3)  # one warm-up step: lr * 1/2


def test_wide_conv_layers_take_smaller_steps_with_a_fan_in_reference() -> None:
    x, y = torch.randn(16, 64, 4, 4), torch.randint(2, (16,))

    def first_steps(reference: int | None) -> tuple[float, float, float]:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(64, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.Flatten(), nn.Linear(64, 2))
        weights = (net[0].weight, net[2].weight, net[4].weight)
        before = [w.detach().clone() for w in weights]
        fit(net, x, y, x, y, TrainSettings(epochs=1, batch_size=16, lr=0.1, fan_in_reference=reference))
        # Adam's first step moves each weight with a gradient by about lr
        return tuple((w.detach() - b).abs().max().item() for w, b in zip(weights, before, strict=True))

    assert first_steps(None) == pytest.approx((0.1, 0.1, 0.1), rel=1e-3)
    # 64 channels in: sqrt(16 / 64) = 1/2; 4 channels in and the linear layer: the rate itself
    assert first_steps(16) == pytest.approx((0.05, 0.1, 0.1), rel=1e-3)


def test_fit_trains_convolutions_channels_last_and_hands_them_back_contiguous() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 8, 8, generator=generator)
    y = (x[:, 0].mean(dim=(1, 2)) > 0).long()
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 2))
    conv = net[0].weight
    seen: list[bool] = []
    fit(net, x, y, x, y, TrainSettings(epochs=2, batch_size=16, lr=1e-2),
        after_step=lambda: seen.append(conv.is_contiguous(memory_format=torch.channels_last)))
    assert all(seen) and len(seen) == 8  # 2 epochs x 4 steps, all channels-last on the CPU
    assert net[0].weight is conv and conv.is_contiguous()  # the same parameter, contiguous again


def _small_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_replicas_train_as_if_each_trained_alone() -> None:
    x, y = data()
    settings = TrainSettings(epochs=3, batch_size=16, lr=1e-2, seed=0, warmup_epochs=0.5)
    together = Replicas([_small_net(1), _small_net(2)])
    history = fit(together, x, y, x, y, settings)
    alone = [_small_net(1), _small_net(2)]
    for net in alone:
        fit(net, x, y, x, y, settings)
    for trained, reference in zip(together.copies, alone, strict=True):
        for a, b in zip(trained.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(a, b)
    # the metrics are the replicas' means
    each = [evaluate(net, x, y, 16) for net in alone]
    assert history[-1].val_loss == pytest.approx(sum(loss for loss, _ in each) / 2, rel=1e-5)
    assert history[-1].val_acc == pytest.approx(sum(acc for _, acc in each) / 2)
