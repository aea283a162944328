import pytest
import torch
import torch.nn.functional as F

from models import ConvNet, default_pool_after, format_widths
from search.train import TrainSettings, fit


def tiny_net(**kwargs: object) -> ConvNet:
    options = {"in_channels": 3, "image_size": 8, "num_classes": 4, "hidden": (16,), "seed": 0, **kwargs}
    return ConvNet((4, 6, 8), **options)  # type: ignore[arg-type]


def test_output_shape_and_feature_shapes() -> None:
    net = tiny_net()
    assert net.pool_after == (1, 2)  # every second block and the last
    assert net(torch.zeros(5, 3, 8, 8)).shape == (5, 4)
    assert net.feature_shape(0) == (3, 8, 8)
    assert net.feature_shape(1) == (4, 8, 8)
    assert net.feature_shape(2) == (6, 4, 4)
    assert net.feature_shape(3) == (8, 2, 2)
    assert net.lower()(torch.zeros(2, 3, 8, 8)).shape == (2, 3, 8, 8)  # frozen=0: lower is the identity


def test_parameter_counts_match_hand_count() -> None:
    net = tiny_net(frozen=2)
    conv = [(3 * 9 + 1) * 4, (4 * 9 + 1) * 6, (6 * 9 + 1) * 8]
    head = (8 * 2 * 2 + 1) * 16 + (16 + 1) * 4
    assert net.frozen_params() == conv[0] + conv[1]
    assert net.trained_params() == conv[2] + head


def test_pooling_stops_before_the_map_gets_smaller_than_2x2() -> None:
    assert default_pool_after(5, 16) == (1, 3, 4)
    assert default_pool_after(5, 8) == (1, 3)
    assert default_pool_after(2, 4) == (1,)


def test_frozen_layers_get_no_gradient_and_do_not_change_in_training() -> None:
    net = tiny_net(frozen=2)
    before = [p.detach().clone() for p in net.lower().parameters()]
    x, y = torch.randn(64, 3, 8, 8), torch.randint(4, (64,))
    F.cross_entropy(net(x), y).backward()
    assert all(p.grad is None and not p.requires_grad for p in net.lower().parameters())
    assert all(p.grad is not None for p in net.upper().parameters())
    net.zero_grad()
    fit(net, x, y, x, y, TrainSettings(epochs=2, batch_size=16, lr=1e-2))
    assert all(torch.equal(a, b) for a, b in zip(before, net.lower().parameters(), strict=True))
    assert not torch.equal(net.convs()[2].weight, tiny_net(frozen=2).convs()[2].weight)  # the top did train


def test_random_weights_are_a_function_of_seed_and_widths() -> None:
    a, b, c = tiny_net(seed=3), tiny_net(seed=3), tiny_net(seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.convs()[0].weight, c.convs()[0].weight)


@pytest.mark.parametrize("widths", [(), (4, 0, 8)])
def test_non_positive_widths_are_rejected(widths: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="positive"):
        ConvNet(widths, 3, 8, 4)


def test_frozen_may_cover_every_conv_layer_but_no_more() -> None:
    net = tiny_net(frozen=3)  # random features under a trained head
    assert net.trained_params() == sum(p.numel() for p in net.head.parameters())
    with pytest.raises(ValueError, match="frozen=4"):
        tiny_net(frozen=4)


def test_format_widths() -> None:
    assert format_widths((16, 32, 64, 64, 128)) == "16-32-64-64-128"
