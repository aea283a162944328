"""Initialisation that respects max-norm constraints.

A max-norm constraint caps the L2 norm of each unit's incoming weights: for a conv layer
the kernel of one output channel (over in_channels x kh x kw), for a linear layer the
weight vector of one output unit (a column of W when W maps inputs to outputs; a row of
PyTorch's ``weight``). Srivastava et al. (2014) pair it with dropout; here it also keeps
widened networks comparable across stages.

With i.i.d. N(0, sigma^2) entries, the norm of an n-entry vector is sigma times a chi
variable with n degrees of freedom, whose mean is sqrt(2) Gamma((n+1)/2) / Gamma(n/2).
So sigma is solved analytically to make the *expected* initial norm a chosen fraction of
the maximum, rather than initialising and then clipping (which would bias every unit to
the boundary).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def chi_mean(degrees_of_freedom: int) -> float:
    """Mean of a chi distribution: E||z|| for z ~ N(0, I_n)."""
    n = degrees_of_freedom
    return math.sqrt(2.0) * math.exp(math.lgamma((n + 1) / 2) - math.lgamma(n / 2))


def fan_in(weight: torch.Tensor) -> int:
    """Number of incoming weights of one unit (one output kernel or one output neuron)."""
    return int(weight[0].numel())


def norm_aware_std(weight: torch.Tensor, max_norm: float | None, norm_fraction: float = 0.5) -> float:
    """Standard deviation for ``weight``'s entries.

    Without a constraint this is He et al. (2015): sqrt(2 / fan_in), right for ReLU.
    With one, the expected per-unit norm is ``norm_fraction * max_norm``.
    """
    n = fan_in(weight)
    if max_norm is None:
        return math.sqrt(2.0 / n)
    return norm_fraction * max_norm / chi_mean(n)


@torch.no_grad()
def init_layer(
    layer: nn.Conv2d | nn.Linear,
    max_norm: float | None,
    norm_fraction: float = 0.5,
    generator: torch.Generator | None = None,
) -> None:
    """Initialise ``layer`` in place: normal weights at the norm-aware scale, zero bias."""
    init_weight_(layer.weight, max_norm, norm_fraction, generator)
    if layer.bias is not None:
        layer.bias.zero_()


@torch.no_grad()
def init_weight_(
    weight: torch.Tensor,
    max_norm: float | None,
    norm_fraction: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``weight`` (any slice of a layer's weight, e.g. new channels) in place."""
    std = norm_aware_std(weight, max_norm, norm_fraction)
    # Sample on the CPU so the same seed gives the same weights on every device.
    values = torch.randn(weight.shape, generator=generator, dtype=torch.float32) * std
    weight.copy_(values.to(device=weight.device, dtype=weight.dtype))
    return weight


def unit_norms(weight: torch.Tensor) -> torch.Tensor:
    """Per-unit L2 norm: one value per output kernel / output neuron."""
    return weight.detach().flatten(1).norm(dim=1)


@torch.no_grad()
def apply_max_norm_(weight: torch.Tensor, max_norm: float) -> None:
    """Project every unit whose norm exceeds ``max_norm`` back onto the ball."""
    weight.copy_(torch.renorm(weight, p=2, dim=0, maxnorm=max_norm))
