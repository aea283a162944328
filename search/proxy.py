"""The cheap score of one candidate: frozen random lower layers, cached features, train the top.

The lower ``frozen_layers`` conv blocks keep their random initial weights, so their output
is a fixed function of the image (no augmentation in the proxy). It is computed once per
trial over the train and val splits and kept while it fits in ``cache_mb``; each proxy
epoch then costs only the top. Past that size it is recomputed per batch instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from models import ConvNet, format_widths
from search.config import ModelConfig, ProxyConfig
from search.data import TensorData
from search.train import EpochMetrics, TrainSettings, fit

FEATURE_BATCH = 1024
BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: a width per conv layer and how many are frozen."""

    widths: tuple[int, ...]
    frozen_layers: int

    @property
    def label(self) -> str:
        return format_widths(self.widths)


@dataclass(frozen=True)
class ProxyResult:
    candidate: Candidate
    score: float  # validation accuracy after the last epoch
    history: tuple[EpochMetrics, ...]
    trained_params: int
    frozen_params: int
    cached: bool
    cache_time_s: float  # computing the frozen features once
    seconds: float  # the whole trial: build, cache, train

    def as_metrics(self) -> dict[str, float]:
        """The end-of-trial MLflow metrics."""
        return {"proxy_score": self.score, "trial_time_s": self.seconds, "cache_time_s": self.cache_time_s}


def build_model(candidate: Candidate, data: TensorData, model: ModelConfig, seed: int) -> ConvNet:
    """The candidate's network; its random weights depend only on (seed, widths)."""
    return ConvNet(
        candidate.widths,
        in_channels=data.in_channels,
        image_size=data.image_size,
        num_classes=data.num_classes,
        frozen=candidate.frozen_layers,
        hidden=model.hidden,
        pool_after=model.pool_after,
        max_kernel_norm=model.max_kernel_norm,
        max_column_norm=model.max_column_norm,
        norm_fraction=model.norm_fraction,
        seed=seed,
    ).to(data.x_train.device)


def feature_bytes(model: ConvNet, num_images: int) -> int:
    return num_images * math.prod(model.feature_shape(model.frozen)) * BYTES_PER_FLOAT


@torch.no_grad()
def frozen_features(model: ConvNet, x: torch.Tensor) -> torch.Tensor:
    """Output of the frozen blocks over ``x``, computed in batches."""
    lower = model.lower().eval()
    return torch.cat([lower(x[start : start + FEATURE_BATCH]) for start in range(0, x.shape[0], FEATURE_BATCH)])


def score_candidate(
    candidate: Candidate,
    data: TensorData,
    model_config: ModelConfig,
    proxy: ProxyConfig,
    seed: int,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> ProxyResult:
    """Train the top of ``candidate`` over frozen random features; score = val accuracy.

    ``on_epoch`` sees every epoch's metrics and may raise to stop the trial (pruning).

    Example:
        >>> from search.data import make_synthetic
        >>> data = make_synthetic(64, 32, num_classes=2, image_size=8)
        >>> result = score_candidate(Candidate((4, 4, 8), 2), data, ModelConfig(hidden=(16,)),
        ...                          ProxyConfig(epochs=1, batch_size=32), seed=0)
        >>> 0.0 <= result.score <= 1.0 and result.cached
        True
    """
    start = time.perf_counter()
    model = build_model(candidate, data, model_config, seed)
    n_images = data.x_train.shape[0] + data.x_val.shape[0]
    cached = candidate.frozen_layers > 0 and feature_bytes(model, n_images) <= proxy.cache_mb * 2**20
    transform = None
    if cached:
        x_train, x_val = frozen_features(model, data.x_train), frozen_features(model, data.x_val)
    elif candidate.frozen_layers > 0:
        x_train, x_val = data.x_train, data.x_val
        transform = model.lower().eval()
    else:
        x_train, x_val = data.x_train, data.x_val
    cache_time_s = time.perf_counter() - start

    upper = model.upper()
    history = fit(
        upper,
        x_train,
        data.y_train,
        x_val,
        data.y_val,
        TrainSettings(proxy.epochs, proxy.batch_size, proxy.lr, proxy.weight_decay, seed, amp=proxy.amp),
        transform=transform,
        after_step=model.apply_constraints_ if model.has_constraints else None,
        on_epoch=on_epoch,
    )
    return ProxyResult(
        candidate=candidate,
        score=history[-1].val_acc,
        history=tuple(history),
        trained_params=model.trained_params(),
        frozen_params=model.frozen_params(),
        cached=cached,
        cache_time_s=cache_time_s,
        seconds=time.perf_counter() - start,
    )
