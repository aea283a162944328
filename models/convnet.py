"""A plain convnet whose conv widths are a profile: the object every search phase builds.

    x -> [conv3x3 -> ReLU (-> maxpool 2x2)] * L -> flatten -> [linear -> ReLU] * H -> linear

The lower ``frozen`` conv blocks keep their random initial weights with gradients off.
Their output is a fixed function of the input, which is what lets the proxy cache it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from models.init import apply_max_norm_, init_layer

REFERENCE_WIDTHS = (10, 20, 64, 64, 128)
REFERENCE_HIDDEN = (256, 256)


def default_pool_after(num_layers: int, image_size: int) -> tuple[int, ...]:
    """Blocks (0-based) followed by a 2x2 max-pool: every second block and the last,
    as long as the feature map stays at least 2x2."""
    pools: list[int] = []
    size = image_size
    for index in range(num_layers):
        if ((index + 1) % 2 == 0 or index == num_layers - 1) and size // 2 >= 2:
            pools.append(index)
            size //= 2
    return tuple(pools)


def format_widths(widths: Sequence[int]) -> str:
    """``(16, 32, 64)`` -> ``"16-32-64"``: the form used in params, tables and the CLI."""
    return "-".join(str(w) for w in widths)


def parse_widths(text: str) -> tuple[int, ...]:
    """``"16-32-64"`` -> ``(16, 32, 64)``, the inverse of ``format_widths`` (``""`` -> ``()``).

    Example:
        >>> parse_widths(format_widths((16, 32, 64)))
        (16, 32, 64)
    """
    return tuple(int(w) for w in text.split("-")) if text else ()


def count_params(module: nn.Module, trainable: bool) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad == trainable)


class ConvNet(nn.Module):
    """Conv blocks of the given widths, then a fully connected head.

    Example:
        >>> net = ConvNet((10, 20, 64, 64, 128), in_channels=1, image_size=16,
        ...               num_classes=10, frozen=3, seed=0)
        >>> net(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
        >>> net.trained_params() + net.frozen_params() == sum(p.numel() for p in net.parameters())
        True
    """

    def __init__(
        self,
        widths: Sequence[int],
        in_channels: int,
        image_size: int,
        num_classes: int,
        frozen: int = 0,
        hidden: Sequence[int] = REFERENCE_HIDDEN,
        pool_after: Sequence[int] | None = None,
        max_kernel_norm: float | None = None,
        max_column_norm: float | None = None,
        norm_fraction: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not widths or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be positive integers, got {tuple(widths)}")
        if not 0 <= frozen <= len(widths):  # all frozen: random features under a trained head
            raise ValueError(f"frozen={frozen} must be in [0, {len(widths)}] for {len(widths)} conv layers")
        self.widths = tuple(int(w) for w in widths)
        self.in_channels = in_channels
        self.image_size = image_size
        self.num_classes = num_classes
        self.frozen = frozen
        self.hidden = tuple(hidden)
        self.pool_after = tuple(default_pool_after(len(widths), image_size) if pool_after is None else pool_after)
        self.max_kernel_norm = max_kernel_norm
        self.max_column_norm = max_column_norm
        self.norm_fraction = norm_fraction
        self.seed = seed

        blocks = []
        channels, size = in_channels, image_size
        for index, width in enumerate(self.widths):
            layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            if index in self.pool_after:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            blocks.append(nn.Sequential(*layers))
            channels = width
        self.blocks = nn.ModuleList(blocks)

        head: list[nn.Module] = [nn.Flatten()]
        features = channels * size * size
        for units in self.hidden:
            head += [nn.Linear(features, units), nn.ReLU()]
            features = units
        head.append(nn.Linear(features, num_classes))
        self.head = nn.Sequential(*head)

        self.reset_parameters(seed)
        for block in self.blocks[:frozen]:
            block.requires_grad_(False)

    # -- structure -------------------------------------------------------------------

    def convs(self) -> list[nn.Conv2d]:
        return [block[0] for block in self.blocks]

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.head if isinstance(m, nn.Linear)]

    def lower(self) -> nn.Sequential:
        """The frozen random blocks (empty when ``frozen == 0``); shares parameters."""
        return nn.Sequential(*self.blocks[: self.frozen])

    def upper(self) -> nn.Sequential:
        """Everything that trains: the blocks above the frozen ones and the head."""
        return nn.Sequential(*self.blocks[self.frozen :], self.head)

    def feature_shape(self, after_blocks: int) -> tuple[int, int, int]:
        """(channels, height, width) of the output of the first ``after_blocks`` blocks."""
        channels = self.in_channels if after_blocks == 0 else self.widths[after_blocks - 1]
        size = self.image_size
        for index in range(after_blocks):
            if index in self.pool_after:
                size //= 2
        return channels, size, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def spec(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this architecture (``ConvNet(**net.spec())``)."""
        return {
            "widths": self.widths,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "frozen": self.frozen,
            "hidden": self.hidden,
            "pool_after": self.pool_after,
            "max_kernel_norm": self.max_kernel_norm,
            "max_column_norm": self.max_column_norm,
            "norm_fraction": self.norm_fraction,
            "seed": self.seed,
        }

    # -- parameters ------------------------------------------------------------------

    def trained_params(self) -> int:
        return count_params(self, trainable=True)

    def frozen_params(self) -> int:
        return count_params(self, trainable=False)

    def reset_parameters(self, seed: int) -> None:
        """Draw every weight from one generator so (seed, widths) fixes the network."""
        generator = torch.Generator().manual_seed(seed)
        for conv in self.convs():
            init_layer(conv, self.max_kernel_norm, self.norm_fraction, generator)
        for linear in self.linears():
            init_layer(linear, self.max_column_norm, self.norm_fraction, generator)

    @torch.no_grad()
    def zero_classifier_(self) -> ConvNet:
        """Zero the last linear layer, so training starts from uniform predictions (loss ln C).

        With He scale there too, the first logits were large (loss 2-3x ln C) and the first
        Adam steps pushed every unit of a narrow layer below zero: 1 of 6 seeds of
        ``64-16-64-4-16`` ended at chance on digits. Zeroed, none did. The gradient still
        reaches the lower layers from the second step on. Training calls this; a network "at
        initialisation" (the zero-cost scorers) keeps He scale everywhere, as in their papers.
        """
        classifier = self.linears()[-1]
        classifier.weight.zero_()
        if classifier.bias is not None:
            classifier.bias.zero_()
        return self

    def apply_constraints_(self) -> None:
        """Project trained weights back under their max norms; call after each step."""
        if self.max_kernel_norm is not None:
            for conv in self.convs():
                if conv.weight.requires_grad:
                    apply_max_norm_(conv.weight, self.max_kernel_norm)
        if self.max_column_norm is not None:
            for linear in self.linears():
                apply_max_norm_(linear.weight, self.max_column_norm)

    @property
    def has_constraints(self) -> bool:
        return self.max_kernel_norm is not None or self.max_column_norm is not None
