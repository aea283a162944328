"""The cheap score of one candidate: frozen random lower layers, cached features, train the top.

The lower ``frozen_layers`` conv blocks keep their random initial weights, so their output
is a fixed function of the image (no augmentation in the proxy). It is computed once per
trial over the train and val splits and kept while it fits in ``cache_mb``; each proxy
epoch then costs only the top. Past that size it is recomputed per batch instead.

The frozen features are standardised per channel with statistics of the training features
(computed once): random ReLU layers give non-negative features whose scale depends on the
widths, and a narrow trained layer on top of badly scaled ones lost all its ReLUs in the first
Adam steps (``8-96-8-64-4`` ended at chance on a held-out dataset while it trained fine in
full). The top trains on the first ``train_images`` training images with a cosine decay.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from models import ConvNet, format_widths
from search.config import ModelConfig, ProxyConfig
from search.data import TensorData
from search.train import CosineDecay, EpochMetrics, Replicas, TrainSettings, fit, laid_out, memory_format

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
    score: float  # validation accuracy after the last epoch (a trial's score takes search.trial.score_penalty off)
    history: tuple[EpochMetrics, ...]
    trained_params: int
    frozen_params: int
    cached: bool
    cache_time_s: float  # computing the frozen features once
    seconds: float  # the whole trial: build, cache, train
    features_reused: bool = False  # the frozen features came from an earlier trial with the same lower widths

    def as_metrics(self) -> dict[str, float]:
        """The end-of-trial MLflow metrics besides the score (``search.trial.run_trial`` adds it)."""
        return {"trial_time_s": self.seconds, "cache_time_s": self.cache_time_s,
                "features_reused": float(self.features_reused)}


def describe(proxy: ProxyConfig, train_images: int) -> str:
    """The proxy's settings in words, for a dataset of ``train_images`` training images.

    Example:
        >>> describe(ProxyConfig(), 8000), describe(ProxyConfig(epochs=1, replicas=1), 1438)
        ('4 epochs x 2 tops on 2,000 of 8,000 training images', '1 epoch x 1 top on all 1,438 training images')
    """
    used = train_images if proxy.train_images is None else min(proxy.train_images, train_images)
    images = f"all {train_images:,}" if used == train_images else f"{used:,} of {train_images:,}"
    return (f"{proxy.epochs} epoch{'s' if proxy.epochs > 1 else ''} x {proxy.replicas} "
            f"top{'s' if proxy.replicas > 1 else ''} on {images} training images")


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
def feature_batches(lower: nn.Module, x: torch.Tensor) -> Iterator[torch.Tensor]:
    """Output of the frozen blocks ``lower`` over ``x``, one batch of FEATURE_BATCH images at a
    time, in the device's fastest layout (``search.train.memory_format``)."""
    layout = memory_format(x.device)
    with laid_out([lower], layout):
        for start in range(0, x.shape[0], FEATURE_BATCH):
            yield lower(x[start : start + FEATURE_BATCH].contiguous(memory_format=layout))


def frozen_features(model: ConvNet, x: torch.Tensor) -> torch.Tensor:
    """Output of the frozen blocks over ``x``, computed in batches."""
    return torch.cat(list(feature_batches(model.lower().eval(), x)))


def lower_key(model: ConvNet, proxy: ProxyConfig) -> tuple:
    """Everything the cached (standardised) frozen features of ``model`` depend on besides the data."""
    k = model.frozen
    return ("frozen-features", model.seed, model.widths[:k], tuple(i for i in model.pool_after if i < k),
            model.max_kernel_norm, model.norm_fraction, proxy.train_images, proxy.standardise)


def cached_features(model: ConvNet, x_train: torch.Tensor, x_val: torch.Tensor,
                    standardise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen blocks' output over both splits, standardised with the training split's statistics."""
    x_train, x_val = frozen_features(model, x_train), frozen_features(model, x_val)
    if standardise:
        scale = Standardise.of(x_train.split(FEATURE_BATCH))  # float64 a batch at a time
        x_train, x_val = scale(x_train), scale(x_val)
    return x_train, x_val


def frozen_transform(model: ConvNet, x_train: torch.Tensor, standardise: bool) -> nn.Module:
    """The frozen blocks of ``model`` as a per-batch transform (features not cached), standardised
    with the training split's statistics."""
    lower = model.lower().eval()
    return nn.Sequential(lower, Standardise.of(feature_batches(lower, x_train))) if standardise else lower


class SideBySide(nn.Module):
    """Each part's output over the same input, concatenated along the channels."""

    def __init__(self, parts: list[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([part(x) for part in self.parts], dim=1)


class Standardise(nn.Module):
    """Per-channel (x - mean) / std with fixed statistics: the frozen features' scale, removed."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1))
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @classmethod
    def of(cls, batches: Iterable[torch.Tensor]) -> Standardise:
        """Statistics over (N, C, H, W) batches, accumulated in float64 (one pass, nothing kept)."""
        count, total, squares = 0, 0.0, 0.0
        for features in batches:
            values = features.double().transpose(0, 1).flatten(1)  # (C, N*H*W)
            count += values.shape[1]
            total = total + values.sum(dim=1)
            squares = squares + (values * values).sum(dim=1)
        mean = total / count
        variance = (squares - count * mean * mean) / max(count - 1, 1)
        return cls(mean.float(), variance.clamp_min(0).sqrt().float())


def score_candidate(
    candidate: Candidate,
    data: TensorData,
    model_config: ModelConfig,
    proxy: ProxyConfig,
    seed: int,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> ProxyResult:
    """Train the top of ``candidate`` over frozen random features; score = val accuracy (the
    mean over ``proxy.replicas`` tops trained side by side on the same features).

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
    # Replica r > 0 takes the top of the same profile built with seed + r; its lower blocks are
    # unused, or with frozen_per_replica its own frozen features, side by side with the others'.
    tops = [build_model(candidate, data, model_config, seed + r).zero_classifier_() for r in range(proxy.replicas)]
    model = tops[0]
    lowers = tops if proxy.frozen_per_replica and candidate.frozen_layers > 0 else tops[:1]
    x_train, y_train = data.x_train[: proxy.train_images], data.y_train[: proxy.train_images]
    x_val = data.x_val
    n_images = x_train.shape[0] + x_val.shape[0]
    cached = candidate.frozen_layers > 0 and len(lowers) * feature_bytes(model, n_images) <= proxy.cache_mb * 2**20
    transform = None
    reused = False
    if cached:
        def compute() -> tuple[torch.Tensor, torch.Tensor]:
            splits = [cached_features(lower, x_train, x_val, proxy.standardise) for lower in lowers]
            if len(splits) == 1:  # one set of frozen layers: no copy
                return splits[0]
            return torch.cat([s[0] for s in splits], dim=1), torch.cat([s[1] for s in splits], dim=1)

        (x_train, x_val), reused = data.derived.get(tuple(lower_key(lower, proxy) for lower in lowers), compute,
                                                    max_bytes=proxy.cache_mb * 2**20)
    elif candidate.frozen_layers > 0:
        parts = [frozen_transform(lower, x_train, proxy.standardise) for lower in lowers]
        transform = parts[0] if len(parts) == 1 else SideBySide(parts)  # no copy per batch for one set
    cache_time_s = time.perf_counter() - start

    if len(tops) == 1:
        upper = model.upper()
    else:
        split = model.feature_shape(candidate.frozen_layers)[0] if len(lowers) > 1 else None
        upper = Replicas([top.upper() for top in tops], split=split)

    def constrain() -> None:
        for top in tops:
            top.apply_constraints_()

    decay = CosineDecay(proxy.epochs) if proxy.decay == "cosine" else None
    history = fit(
        upper,
        x_train,
        y_train,
        x_val,
        data.y_val,
        TrainSettings(proxy.epochs, proxy.batch_size, proxy.lr, proxy.weight_decay, seed, amp=proxy.amp,
                      warmup_epochs=proxy.warmup_epochs, decay=decay, fan_in_reference=proxy.lr_fan_in),
        transform=transform,
        after_step=constrain if model.has_constraints else None,
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
        features_reused=reused,
    )
