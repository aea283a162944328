import pytest
import torch

from models import ConvNet
from models.widen import widen


def narrow_net() -> ConvNet:
    net = ConvNet((3, 5, 6), in_channels=2, image_size=8, num_classes=4, hidden=(7,), seed=1)
    with torch.no_grad():  # biases away from zero, so a misplaced bias shows
        for conv in net.convs():
            conv.bias.uniform_(-0.5, 0.5)
    return net


def test_partial_keeps_every_old_weight_in_its_slot() -> None:
    old = narrow_net()
    new = widen(old, (6, 10, 12), mode="partial", seed=5)
    for old_conv, new_conv in zip(old.convs(), new.convs(), strict=True):
        out, inp = old_conv.weight.shape[:2]
        assert torch.equal(new_conv.weight[:out, :inp], old_conv.weight)
        assert torch.equal(new_conv.bias[:out], old_conv.bias)
    assert new.convs()[0].weight.shape == (6, 2, 3, 3) and new.convs()[1].weight.shape == (10, 6, 3, 3)
    old_first, new_first = old.linears()[0], new.linears()[0]
    assert torch.equal(new_first.weight[:, : old_first.in_features], old_first.weight)
    assert torch.equal(new.linears()[1].weight, old.linears()[1].weight)
    # the new channels are freshly initialised, not zero
    assert new.convs()[1].weight[5:].abs().sum() > 0


def test_partial_to_the_same_widths_is_the_same_function() -> None:
    old = narrow_net()
    x = torch.randn(3, 2, 8, 8)
    torch.testing.assert_close(widen(old, old.widths, mode="partial")(x), old(x))


def test_net2net_preserves_the_function_before_training() -> None:
    old = narrow_net()
    new = widen(old, (7, 11, 13), mode="net2net", seed=3)
    x = torch.randn(16, 2, 8, 8)
    torch.testing.assert_close(new(x), old(x), atol=1e-5, rtol=1e-4)
    assert new.widths == (7, 11, 13)


def test_net2net_noise_breaks_symmetry_but_stays_close() -> None:
    old = narrow_net()
    x = torch.randn(16, 2, 8, 8)
    noisy = widen(old, (6, 10, 12), mode="net2net", seed=3, noise=0.01)(x)
    assert not torch.allclose(noisy, old(x), atol=1e-6)
    torch.testing.assert_close(noisy, old(x), atol=0.1, rtol=0.1)


def test_widening_to_fewer_channels_is_refused() -> None:
    with pytest.raises(ValueError, match=r"cannot widen \(3, 5, 6\) to \(3, 4, 6\)"):
        widen(narrow_net(), (3, 4, 6))
