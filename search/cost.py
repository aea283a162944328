"""What a candidate costs: parameters, multiply-adds of one forward pass, measured latency.

Measured once per trial, before any training, so a candidate over a limit (``--max-params``,
``--max-macs``, ``--max-latency-ms``) is rejected without spending an epoch on it. The
parameter and multiply-add counts describe the network as it is deployed (every layer, with
no layer frozen); the latency is the median of timed forward passes of one batch on the
trial's device.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from models import ConvNet
from search.config import ModelConfig, SearchConfig
from search.data import TensorData
from search.proxy import Candidate, build_model

# What a trial records of its cost (Cost.record's keys), as MLflow params and Optuna user attributes.
COST_ATTRS = ("trained_params", "frozen_params", "total_params", "macs", "latency_ms")
LATENCY_WARMUP = 2
LATENCY_REPEATS = 5


@dataclass(frozen=True)
class Cost:
    trained_params: int  # trained in the proxy (above the frozen layers)
    frozen_params: int  # the frozen random layers' (trained too once the candidate is trained in full)
    macs: int  # multiply-adds of one image's forward pass (conv and linear layers)
    latency_ms: float  # median milliseconds of one batch's forward pass on the trial's device

    @property
    def total_params(self) -> int:
        return self.trained_params + self.frozen_params

    def value(self, name: str) -> float:
        """The cost an objective or a limit names: ``params`` (total), ``macs`` or ``latency``."""
        return {"params": self.total_params, "macs": self.macs, "latency": self.latency_ms}[name]

    def record(self) -> dict[str, Any]:
        """As MLflow params and metrics and Optuna user attributes."""
        return {"trained_params": self.trained_params, "frozen_params": self.frozen_params,
                "total_params": self.total_params, "macs": self.macs, "latency_ms": round(self.latency_ms, 4)}


def count_macs(net: ConvNet) -> int:
    """Multiply-adds of one image through ``net``: each conv's ``out x in x 3 x 3`` per output
    pixel (padding keeps the input's size) and each linear layer's ``in x out``; biases,
    ReLUs and pooling are not counted.

    Example:
        >>> net = ConvNet((2, 3), in_channels=1, image_size=4, num_classes=2, hidden=(5,), pool_after=(1,))
        >>> count_macs(net) == 2 * 1 * 9 * 16 + 3 * 2 * 9 * 16 + (3 * 2 * 2) * 5 + 5 * 2
        True
    """
    total = 0
    for index, conv in enumerate(net.convs()):
        _, height, width = net.feature_shape(index)
        total += conv.weight.numel() * height * width
    return total + sum(linear.weight.numel() for linear in net.linears())


@torch.inference_mode()
def latency_ms(net: nn.Module, input_shape: tuple[int, ...], batch_size: int, device: torch.device) -> float:
    """Median milliseconds of one forward pass of a batch of ``batch_size`` on ``device``
    (float32, eval mode, after a few untimed passes)."""
    net = net.to(device).eval()
    batch = torch.randn(batch_size, *input_shape, device=device)
    times = []
    for index in range(LATENCY_WARMUP + LATENCY_REPEATS):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        net(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= LATENCY_WARMUP:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure_cost(candidate: Candidate, data: TensorData, model: ModelConfig, batch_size: int) -> Cost:
    """The candidate's counts and its latency on the device its data lives on."""
    device = data.x_train.device
    net = build_model(candidate, replace(data, x_train=data.x_train[:1].cpu()), model, seed=0)
    counts = net.trained_params(), net.frozen_params(), count_macs(net)
    return Cost(*counts, latency_ms(net, tuple(data.x_train.shape[1:]), batch_size, device))


def over_limit(cost: Cost, search: SearchConfig) -> str | None:
    """Why the candidate may not be trained (the first limit it is over), or None.

    Example:
        >>> over_limit(Cost(900, 200, 5000, 1.5), SearchConfig(max_params=1000))
        'params 1,100 > --max-params 1,000'
        >>> over_limit(Cost(900, 200, 5000, 1.5), SearchConfig(max_macs=5000, max_latency_ms=2.0)) is None
        True
    """
    limits = (("params", search.max_params, "--max-params"), ("macs", search.max_macs, "--max-macs"),
              ("latency", search.max_latency_ms, "--max-latency-ms"))
    for name, limit, flag in limits:
        if limit is not None and cost.value(name) > limit:
            return f"{name} {cost_text(name, cost.value(name))} > {flag} {cost_text(name, limit)}"
    return None


def cost_text(name: str, value: float) -> str:
    """``params``/``macs`` as whole numbers with thousands separators, ``latency`` in ms."""
    return f"{value:.3g} ms" if name == "latency" else f"{value:,.0f}"
