"""Widen a trained ConvNet to more channels per conv layer.

``partial``: a fresh network at the new widths (norm-aware init) receives the trained
kernels in its first channels, with their slices in the next layer's input channels and
in the head's input features; every other weight keeps its fresh initialisation.

``net2net``: Net2WiderNet (Chen, Goodfellow and Shlens, "Net2Net: Accelerating Learning
via Knowledge Transfer", ICLR 2016). Each new channel replicates a randomly chosen old
one; the consumers of a replicated channel divide its outgoing weights by the number of
copies, so the wider network computes the same function (ReLU and max-pool act per
channel, so replication commutes with them). Optional noise breaks the symmetry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from models.convnet import ConvNet

WidenMode = Literal["partial", "net2net"]
WIDEN_MODES: tuple[str, ...] = ("partial", "net2net")


def like(model: ConvNet, widths: Sequence[int], seed: int) -> ConvNet:
    """A freshly initialised ConvNet with ``model``'s settings and new widths."""
    return ConvNet(**{**model.spec(), "widths": tuple(widths), "seed": seed}).to(next(model.parameters()).device)


def widen(model: ConvNet, widths: Sequence[int], mode: WidenMode = "partial", seed: int = 0,
          noise: float = 0.0) -> ConvNet:
    """A wider copy of ``model``; ``model`` is left unchanged.

    Example:
        >>> narrow = ConvNet((4, 8), in_channels=1, image_size=8, num_classes=3, hidden=(8,), seed=0)
        >>> wide = widen(narrow, (8, 16), mode="net2net")
        >>> x = torch.randn(2, 1, 8, 8)
        >>> torch.allclose(narrow(x), wide(x), atol=1e-5)
        True
    """
    widths = tuple(int(w) for w in widths)
    if len(widths) != len(model.widths) or any(new < old for new, old in zip(widths, model.widths, strict=True)):
        raise ValueError(f"cannot widen {model.widths} to {widths}: need as many layers, none narrower")
    if mode not in WIDEN_MODES:
        raise ValueError(f"unknown widen mode {mode!r}; choose one of {', '.join(WIDEN_MODES)}")
    wide = like(model, widths, seed)
    if mode == "partial":
        _copy_partial(model, wide)
    else:
        _copy_net2net(model, wide, torch.Generator().manual_seed(seed), noise)
    return wide


def spatial_size(model: ConvNet) -> int:
    """Height x width of the last conv block's output: the head's features per channel."""
    _, height, width = model.feature_shape(len(model.widths))
    return height * width


@torch.no_grad()
def _copy_partial(old: ConvNet, new: ConvNet) -> None:
    for old_conv, new_conv in zip(old.convs(), new.convs(), strict=True):
        out_channels, in_channels = old_conv.weight.shape[:2]
        new_conv.weight[:out_channels, :in_channels] = old_conv.weight
        new_conv.bias[:out_channels] = old_conv.bias
    old_linears, new_linears = old.linears(), new.linears()
    # Flattening is channel-major, so the old channels' features are the first ones.
    first_features = old_linears[0].weight.shape[1]
    new_linears[0].weight[:, :first_features] = old_linears[0].weight
    new_linears[0].bias.copy_(old_linears[0].bias)
    for old_linear, new_linear in zip(old_linears[1:], new_linears[1:], strict=True):
        new_linear.load_state_dict(old_linear.state_dict())


@torch.no_grad()
def _copy_net2net(old: ConvNet, new: ConvNet, generator: torch.Generator, noise: float) -> None:
    source = torch.arange(old.in_channels)  # input channel k of a layer copies old channel source[k]
    counts = torch.ones(old.in_channels)  # how many copies each old channel has
    for old_conv, new_conv in zip(old.convs(), new.convs(), strict=True):
        old_out = old_conv.weight.shape[0]
        new_out = new_conv.weight.shape[0]
        extra = torch.randint(old_out, (new_out - old_out,), generator=generator)
        mapping = torch.cat([torch.arange(old_out), extra])
        # Incoming: gather the replicated input channels and divide by their copies.
        weight = old_conv.weight.cpu()[:, source] / counts[source].view(1, -1, 1, 1)
        weight = weight[mapping]
        if noise > 0 and new_out > old_out:
            weight[old_out:] += noise * weight[old_out:].std() * torch.randn(weight[old_out:].shape,
                                                                              generator=generator)
        new_conv.weight.copy_(weight)
        new_conv.bias.copy_(old_conv.bias.cpu()[mapping])
        source, counts = mapping, torch.bincount(mapping, minlength=old_out).float()
    # The head's input features: channel-major blocks of spatial_size(old) each.
    per_channel = spatial_size(old)
    old_first, new_first = old.linears()[0], new.linears()[0]
    blocks = old_first.weight.cpu().view(old_first.out_features, -1, per_channel)
    blocks = blocks[:, source] / counts[source].view(1, -1, 1)
    new_first.weight.copy_(blocks.reshape(new_first.out_features, -1))
    new_first.bias.copy_(old_first.bias)
    for old_linear, new_linear in zip(old.linears()[1:], new.linears()[1:], strict=True):
        new_linear.load_state_dict(old_linear.state_dict())
