"""Remove kernels from a trained ConvNet: the learned width profile made into a narrower network.

Removing kernel ``j`` of conv layer ``i`` drops output channel ``j`` of that conv (its weights
and bias) and the slice of the next layer that reads it: input channel ``j`` of conv
``i + 1``, or, after the last conv, the columns of the first linear layer that the flattened
channel ``j`` feeds. A kernel whose output is zero everywhere contributes nothing to the
layers above, so removing it leaves the network's outputs unchanged; the kernel statistics
call a kernel lazy when zeroing its output (the same operation) barely changes accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.convnet import ConvNet


def slim(net: ConvNet, keep: Sequence[Sequence[int]]) -> ConvNet:
    """A copy of ``net`` with only the kernels ``keep[i]`` (output channels, in order) of each
    conv layer ``i``; nothing is frozen in the copy.

    Example:
        >>> net = ConvNet((4, 3), in_channels=1, image_size=4, num_classes=2, hidden=(5,), seed=0)
        >>> _ = zero_kernels_(net, [[2], []])
        >>> small = slim(net, [[0, 1, 3], [0, 1, 2]])
        >>> small.widths, torch.allclose(small(torch.ones(1, 1, 4, 4)), net(torch.ones(1, 1, 4, 4)))
        ((3, 3), True)
    """
    if len(keep) != len(net.widths):
        raise ValueError(f"keep names {len(keep)} layers; the network has {len(net.widths)}")
    for layer, (kept, width) in enumerate(zip(keep, net.widths, strict=True)):
        if not kept or len(set(kept)) != len(kept) or not all(0 <= k < width for k in kept):
            raise ValueError(f"layer {layer + 1} keeps {list(kept)}: need distinct kernels in [0, {width})")
    spec = {**net.spec(), "widths": tuple(len(k) for k in keep), "frozen": 0, "pool_after": net.pool_after}
    small = ConvNet(**spec)
    with torch.no_grad():
        inputs = torch.arange(net.in_channels)
        for old, new, kept in zip(net.convs(), small.convs(), keep, strict=True):
            rows = torch.as_tensor(list(kept))
            new.weight.copy_(old.weight[rows][:, inputs])
            new.bias.copy_(old.bias[rows])
            inputs = rows
        old_linears, new_linears = net.linears(), small.linears()
        _, height, width = net.feature_shape(len(net.widths))
        first = old_linears[0].weight.view(old_linears[0].out_features, net.widths[-1], height * width)
        new_linears[0].weight.copy_(first[:, inputs].reshape(new_linears[0].weight.shape))
        new_linears[0].bias.copy_(old_linears[0].bias)
        for old, new in zip(old_linears[1:], new_linears[1:], strict=True):
            new.load_state_dict(old.state_dict())
    return small


def zero_kernels_(net: ConvNet, drop: Sequence[Sequence[int]]) -> ConvNet:
    """Zero the weights and biases of kernels ``drop[i]`` of each conv layer ``i`` (in place):
    their outputs are then zero everywhere, as in the ablations that call kernels lazy."""
    with torch.no_grad():
        for conv, dropped in zip(net.convs(), drop, strict=True):
            for kernel in dropped:
                conv.weight[kernel].zero_()
                conv.bias[kernel].zero_()
    return net
