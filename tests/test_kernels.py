"""Kernel statistics on hand-made kernels with known answers, ablations, the learned profile."""

import copy
import math

import pytest
import torch

from models import ConvNet
from models.kernels import (
    ablation_importance,
    group_drops,
    kernel_norms,
    layer_stats,
    lazy_drop,
    learned_widths,
    symmetry_scores,
    value_entropy,
)
from search.config import FullTrainConfig, ModelConfig
from search.data import TensorData
from search.progressive import train_full

MIRRORED = torch.tensor([[1.0, -2.0, 1.0], [3.0, 0.5, 3.0], [-1.0, 4.0, -1.0]])  # left-right mirror only
CONSTANT = torch.full((3, 3), 0.7)
ZERO = torch.zeros(3, 3)
DIAGONAL = torch.eye(3)  # rotating it by 90 degrees gives the anti-diagonal


def as_weight(*kernels: torch.Tensor) -> torch.Tensor:
    return torch.stack(kernels).unsqueeze(1)  # (out, in=1, 3, 3)


def test_norms_of_known_kernels() -> None:
    norms = kernel_norms(as_weight(CONSTANT, ZERO, DIAGONAL))
    assert norms.tolist() == pytest.approx([0.7 * 3, 0.0, math.sqrt(3)])


def test_entropy_is_zero_for_constant_and_zero_kernels_and_highest_for_evenly_spread_values() -> None:
    assert value_entropy(as_weight(CONSTANT, ZERO)).tolist() == [0.0, 0.0]
    even = value_entropy(torch.linspace(-1, 1, 16 * 9).view(1, 16, 3, 3))  # 9 values in each of 16 bins
    assert even.item() == pytest.approx(math.log2(16))
    two_values = value_entropy(as_weight(torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])))
    assert two_values.item() == pytest.approx(-(4 / 9) * math.log2(4 / 9) - (5 / 9) * math.log2(5 / 9))


def test_a_mirrored_kernel_scores_one_for_its_mirror_and_less_for_the_others() -> None:
    scores = symmetry_scores(as_weight(MIRRORED))
    assert scores["mirror_lr"].item() == pytest.approx(1.0)
    assert scores["mirror_ud"].item() < 0.9 and scores["rot90"].item() < 0.9
    assert scores["same_rows"].item() < 0.9 and scores["same_cols"].item() < 0.9


def test_constant_and_zero_kernels_are_symmetric_in_every_way() -> None:
    scores = symmetry_scores(as_weight(CONSTANT, ZERO))
    for name, values in scores.items():
        assert values.tolist() == pytest.approx([1.0, 1.0]), name


def test_identical_rows_and_rotations() -> None:
    rows = torch.tensor([1.0, -1.0, 2.0]).repeat(3, 1)  # three identical rows
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    scores = symmetry_scores(as_weight(rows, cross, DIAGONAL))
    assert scores["same_rows"].tolist()[0] == pytest.approx(1.0) and scores["same_cols"].tolist()[0] < 0.9
    assert scores["rot90"].tolist()[1] == pytest.approx(1.0)
    assert scores["rot90"].tolist()[2] < 0.5 and scores["rot180"].tolist()[2] == pytest.approx(1.0)


def small_net() -> ConvNet:
    return ConvNet((4, 6), in_channels=1, image_size=8, num_classes=3, hidden=(8,), seed=0)


def test_batched_ablation_equals_zeroing_each_kernel_for_real() -> None:
    net = small_net()
    x, y = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.randint(3, (40,))
    for layer, conv in enumerate(net.convs()):
        drop, rise = ablation_importance(net, layer, x, y, max_bytes=1)  # one copy per batch: chunking exercised
        with torch.no_grad():
            base = net(x)
            base_acc, base_loss = (base.argmax(1) == y).float().mean(), torch.nn.functional.cross_entropy(base, y)
            for kernel in range(conv.out_channels):
                saved = conv.weight[kernel].clone(), conv.bias[kernel].clone()
                conv.weight[kernel] = 0
                conv.bias[kernel] = 0
                logits = net(x)
                conv.weight[kernel], conv.bias[kernel] = saved
                assert drop[kernel].item() == pytest.approx((base_acc - (logits.argmax(1) == y).float().mean()).item())
                loss = torch.nn.functional.cross_entropy(logits, y)
                assert rise[kernel].item() == pytest.approx((loss - base_loss).item(), abs=1e-5)
    assert net.training  # the mode is restored


def test_a_dead_kernel_is_lazy_and_the_learned_profile_counts_the_rest() -> None:
    net = small_net()
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net.convs()[1].weight[2:] = 0  # kernels 2..5 of layer 2 output nothing
        net.convs()[1].bias[2:] = 0
        y = net(x).argmax(1)  # labels the net gets right, so every real kernel's ablation may cost accuracy
    stats = layer_stats(net, x, y, threshold=0.0)
    assert stats[1].lazy == (False,) * 6  # threshold 0: the net is right on every image, nothing raises it
    stats = layer_stats(net, x, y, threshold=1e-9)
    assert stats[1].importance[2:] == (0.0,) * 4 and stats[1].lazy[2:] == (True,) * 4
    assert stats[1].group_drop[3] == 0.0  # the four dead ones zeroed together cost nothing either
    assert learned_widths(stats)[1] == 6 - stats[1].removable <= 2
    order = stats[1].order()
    assert sorted(order) == list(range(6))
    assert [stats[1].importance[i] for i in order] == sorted(stats[1].importance, reverse=True)
    rows = stats[1].rows()
    assert len(rows) == 6 and rows[2]["lazy"] is True and rows[2]["norm"] == 0.0


def _zeroed_accuracy(net: ConvNet, drop: dict[int, list[int]], x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy with kernels ``drop[layer]`` zeroed for real (weights and bias), then restored."""
    saved = copy.deepcopy(net.state_dict())
    with torch.no_grad():
        for layer, kernels in drop.items():
            net.convs()[layer].weight[kernels] = 0
            net.convs()[layer].bias[kernels] = 0
        accuracy = (net(x).argmax(1) == y).float().mean().item()
    net.load_state_dict(saved)
    return accuracy


def test_group_drops_equal_zeroing_the_least_important_kernels_together_for_real() -> None:
    net = small_net()
    x, y = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.randint(3, (40,))
    with torch.no_grad():
        base = (net(x).argmax(1) == y).float().mean().item()
    order = [3, 0, 2, 1]
    drops = group_drops(net, 0, order, x, y, max_bytes=1)  # one copy per batch: chunking exercised
    for count in range(1, 5):
        assert drops[count - 1].item() == pytest.approx(base - _zeroed_accuracy(net, {0: order[:count]}, x, y))


def test_the_group_pass_stops_a_few_groups_past_the_first_that_reaches_the_threshold() -> None:
    net = ConvNet((4, 24), in_channels=1, image_size=8, num_classes=3, hidden=(8,), seed=0)
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = net(x).argmax(1)  # every image right: any group that changes a prediction costs accuracy
    order = list(range(24))
    every = group_drops(net, 1, order, x, y)
    first = next(i for i, drop in enumerate(every.tolist()) if drop >= 0.01)
    assert first < 12  # so there is something to skip
    measured = group_drops(net, 1, order, x, y, stop_at=0.01)
    assert measured.tolist() == every[: len(measured)].tolist()  # the same drops, the first ones only
    assert first < len(measured) < 24  # past the first at the threshold, short of all 24
    assert len(measured) in (4, 12)  # batches of 4, then 8: it stops at the end of the batch holding it


def test_the_lazy_kernels_of_a_trained_net_can_go_together(tiny_data: TensorData) -> None:
    """The property the learned widths promise: zeroing a layer's lazy kernels at once (for real),
    on top of the lazy kernels of the layers below, costs less than the threshold, so the network
    with every lazy kernel zeroed is less than layers x threshold below the trained one."""
    _, net = train_full((8, 16, 16), tiny_data, ModelConfig(hidden=(16,)),
                        FullTrainConfig(stages=1, epochs_per_stage=3, batch_size=64), seed=0)
    x, y = tiny_data.x_val, tiny_data.y_val
    threshold = 0.02
    stats = layer_stats(net, x, y, threshold=threshold)
    assert sum(s.removable > 0 for s in stats) >= 2  # lazy kernels in two layers, so their drops can add up
    below: dict[int, list[int]] = {}
    for s in stats:
        lazy = [i for i, flag in enumerate(s.lazy) if flag]
        assert len(lazy) == s.removable == s.width - s.learned_width
        assert set(range(s.width)) - set(s.kept) == set(lazy) - {s.order()[0]}  # one stays where all are lazy
        before = _zeroed_accuracy(net, below, x, y)
        assert before - _zeroed_accuracy(net, {**below, s.layer: lazy}, x, y) < threshold
        if s.removable < s.width:  # and one more kernel, the next least important, would cost too much
            assert s.group_drop[s.removable] >= threshold
        below[s.layer] = [i for i in range(s.width) if i not in s.kept]
    with torch.no_grad():
        base = (net(x).argmax(1) == y).float().mean().item()
    assert lazy_drop(net, stats, x, y) == pytest.approx(base - _zeroed_accuracy(net, below, x, y))
    assert lazy_drop(net, stats, x, y) < len(stats) * threshold
