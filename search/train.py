"""The one epoch loop: the proxy, every widening stage and validation all go through ``fit``.

It times each epoch, evaluates, hands an ``EpochMetrics`` to a callback and returns them
all; it does not log. A callback stops training by raising (pruned, out of budget).
The hot loop keeps the running loss on the device, so there is one sync per epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from search.data import batches

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CosineDecay:
    """A cosine learning-rate decay over a run of ``total_epochs`` that may span several ``fit``
    calls (the widening stages): this call starts ``start_epoch`` epochs into it.

    Constant-rate Adam leaves the last epoch's accuracy at the mercy of the last few steps
    (two seeds of one profile moved by up to 3.4 points); decaying to ~0 ends every run in
    its basin, which is what makes full training a ground truth that repeats.

    Example:
        >>> decay = CosineDecay(total_epochs=4)
        >>> [round(decay.factor(e), 3) for e in (0, 2, 4)]
        [1.0, 0.5, 0.0]
    """

    total_epochs: float
    start_epoch: float = 0.0
    final_fraction: float = 0.0  # the rate at the end of the run, as a fraction of the peak

    def factor(self, epoch: float) -> float:
        """The rate at ``epoch`` of the whole run (fractional), as a fraction of the peak."""
        progress = min(1.0, max(0.0, epoch / self.total_epochs))
        return self.final_fraction + (1 - self.final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    seed: int = 0
    # Linear learning-rate warm-up over this many epochs' steps: a fresh Adam state on a
    # widened network otherwise moves every weight by ~lr at once and can kill its ReLUs.
    warmup_epochs: float = 0.0
    amp: bool = False  # bfloat16 autocast of forward passes on CUDA (no loss scaling needed)
    decay: CosineDecay | None = None  # None: a constant rate after the warm-up
    # Conv weights that read more than this many channels learn at lr x sqrt(fan_in_reference /
    # channels) (None: every weight at lr); see ``rate_scale``.
    fan_in_reference: int | None = None

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based) of this ``fit`` call.

        Example:
            >>> settings = TrainSettings(2, 32, 1.0, warmup_epochs=1, decay=CosineDecay(2))
            >>> [round(settings.lr_at(s, 4), 3) for s in (0, 3, 4, 7)]
            [0.2, 0.553, 0.5, 0.038]
        """
        warmup_steps = self.warmup_epochs * steps_per_epoch
        rate = self.lr * min(1.0, (step + 1) / (warmup_steps + 1)) if warmup_steps > 0 else self.lr
        if self.decay is not None:
            rate *= self.decay.factor(self.decay.start_epoch + step / steps_per_epoch)
        return rate


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_acc: float
    epoch_time_s: float  # the training pass alone
    eval_time_s: float
    images_per_s: float  # training images per second of the training pass

    def as_metrics(self) -> dict[str, float]:
        """The per-epoch MLflow metrics (step = epoch)."""
        return {
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "val_acc": self.val_acc,
            "epoch_time_s": self.epoch_time_s,
            "eval_time_s": self.eval_time_s,
            "images_per_s": self.images_per_s,
        }


class Replicas(nn.Module):
    """Copies of one architecture with their own initial weights, trained side by side on the
    same batches: ``forward`` stacks their logits (R, B, classes). ``fit`` and ``evaluate``
    treat stacked logits as R independent models: each replica's gradient is its own loss's,
    and the metrics are the replicas' means (one seed's score is noisy; their mean is less so).
    With ``split``, the input holds each copy's own features, ``split`` channels each, side by
    side along dimension 1, and copy r reads the r-th block.

    Example:
        >>> net = Replicas([nn.Linear(4, 3), nn.Linear(4, 3)])
        >>> net(torch.zeros(5, 4)).shape
        torch.Size([2, 5, 3])
        >>> Replicas([nn.Linear(4, 3), nn.Linear(4, 3)], split=4)(torch.zeros(5, 8)).shape
        torch.Size([2, 5, 3])
    """

    def __init__(self, copies: list[nn.Module], split: int | None = None) -> None:
        super().__init__()
        self.copies = nn.ModuleList(copies)
        self.split = split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split is None:
            return torch.stack([copy(x) for copy in self.copies])
        return torch.stack([copy(part) for copy, part in zip(self.copies, x.split(self.split, dim=1), strict=True)])


def as_replicas(logits: torch.Tensor) -> torch.Tensor:
    """Logits as (replicas, batch, classes): a plain model's (B, C) are one replica's."""
    return logits if logits.dim() == 3 else logits.unsqueeze(0)


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class StopTraining(Exception):
    """Raised by an ``on_epoch`` callback to end training after that epoch (out of time, say).

    ``fit`` lets it through; callers that can use a partly trained model catch it
    (``search.progressive.train_full`` does, and keeps the epochs done so far).
    """


def memory_format(device: torch.device, amp: bool = False) -> torch.memory_format:
    """The layout convolutions run fastest in: channels-last on the CPU (oneDNN; measured on 2
    cores: training 12-25 % and the frozen-feature pass 30-40 % faster than contiguous, same
    accuracy) and under bfloat16 autocast on CUDA (tensor cores); contiguous otherwise."""
    if device.type == "cpu" or (amp and device.type == "cuda"):
        return torch.channels_last
    return torch.contiguous_format


@contextmanager
def laid_out(modules: list[nn.Module], layout: torch.memory_format) -> Iterator[None]:
    """Hold the 4-D parameters of ``modules`` in ``layout`` for the block, contiguous again after.

    The parameters stay the same objects (optimisers, hooks and ``Freeze`` keep working);
    outside ``fit`` and the feature pass every weight is contiguous, so code that views
    weights (widening, slimming, analysis) never sees another layout.
    """
    for module in modules:
        module.to(memory_format=layout)
    try:
        yield
    finally:
        for module in modules:
            module.to(memory_format=torch.contiguous_format)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bfloat16 autocast on CUDA when ``enabled``; a no-op elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def rate_scale(parameter: torch.Tensor, fan_in_reference: int | None) -> float:
    """The factor on the learning rate of ``parameter``: sqrt(reference / channels) for a conv
    weight that reads more than ``fan_in_reference`` channels, else 1.

    Adam moves every weight by about the rate per step whatever the layer's width, so a wide
    layer's output moves more per step than a narrow one's (the scaling that muP corrects with
    a rate ~ 1/fan-in). Measured in the proxy (README): it mostly tempers the first trained
    layer, whose fan-in is the last frozen width that the proxy overvalued.

    Example:
        >>> [rate_scale(torch.zeros(8, c, 3, 3), 16) for c in (4, 16, 64)], rate_scale(torch.zeros(8, 64), 16)
        ([1.0, 1.0, 0.5], 1.0)
    """
    if fan_in_reference is None or parameter.dim() != 4 or parameter.shape[1] <= fan_in_reference:
        return 1.0
    return math.sqrt(fan_in_reference / parameter.shape[1])


def param_groups(module: nn.Module, settings: TrainSettings) -> list[dict]:
    """``module``'s trainable parameters grouped by their rate's factor (``rate_scale``)."""
    groups: dict[float, list[nn.Parameter]] = {}
    for parameter in module.parameters():
        if parameter.requires_grad:
            groups.setdefault(rate_scale(parameter, settings.fan_in_reference), []).append(parameter)
    return [{"params": params, "scale": scale, "lr": settings.lr * scale} for scale, params in groups.items()]


def fit(
    module: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    settings: TrainSettings,
    *,
    transform: Transform | None = None,
    augment: Transform | None = None,
    after_step: Callable[[], None] | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> list[EpochMetrics]:
    """Train ``module``'s trainable parameters with Adam for ``settings.epochs`` epochs.

    ``transform`` maps a raw batch to the module's input without gradients (the frozen
    lower layers, when their output is not cached); ``augment`` applies to training
    batches only; ``after_step`` runs after every optimiser step (max-norm projection).

    Example:
        >>> from torch import nn
        >>> x, y = torch.randn(64, 4), torch.randint(2, (64,))
        >>> history = fit(nn.Linear(4, 2), x, y, x, y, TrainSettings(epochs=2, batch_size=16, lr=1e-2))
        >>> [m.epoch for m in history]
        [1, 2]
    """
    layout = memory_format(x_train.device, settings.amp)
    with laid_out([module, *([transform] if isinstance(transform, nn.Module) else [])], layout):
        optimizer = torch.optim.Adam(param_groups(module, settings), lr=settings.lr,
                                     weight_decay=settings.weight_decay)
        steps_per_epoch = math.ceil(x_train.shape[0] / settings.batch_size)
        # Steps whose rate differs from lr: all of them with a decay, else the warm-up's (the last
        # of which sets the full rate).
        scheduled_steps = math.inf if settings.decay is not None else settings.warmup_epochs * steps_per_epoch
        step = 0
        generator = torch.Generator().manual_seed(settings.seed)
        device = x_train.device
        n_train = x_train.shape[0]
        history: list[EpochMetrics] = []
        for epoch in range(1, settings.epochs + 1):
            module.train()
            synchronize(device)
            start = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            for xb, yb in batches(x_train, y_train, settings.batch_size, generator):
                if transform is not None:
                    with torch.no_grad():
                        xb = transform(xb)
                if augment is not None:
                    xb = augment(xb)
                with autocast(device, settings.amp):
                    logits = as_replicas(module(xb))
                    replicas = logits.shape[0]
                    loss = F.cross_entropy(logits.flatten(0, 1), yb.repeat(replicas))  # the replicas' mean
                optimizer.zero_grad(set_to_none=True)
                # The sum of the replicas' losses, so each one's gradient is what it alone would get.
                (loss * replicas).backward()
                if step <= scheduled_steps:
                    for group in optimizer.param_groups:
                        group["lr"] = settings.lr_at(step, steps_per_epoch) * group["scale"]
                step += 1
                optimizer.step()
                if after_step is not None:
                    after_step()
                loss_sum += loss.detach() * yb.shape[0]
            train_loss = loss_sum.item() / n_train  # the epoch's one sync
            epoch_time_s = time.perf_counter() - start
            if not math.isfinite(train_loss):
                raise DivergedError(f"training loss is {train_loss} in epoch {epoch}")

            start = time.perf_counter()
            val_loss, val_acc = evaluate(module, x_val, y_val, settings.batch_size, transform, settings.amp)
            eval_time_s = time.perf_counter() - start
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=train_loss,
                val_loss=val_loss,
                val_acc=val_acc,
                epoch_time_s=epoch_time_s,
                eval_time_s=eval_time_s,
                images_per_s=n_train / epoch_time_s,
            )
            history.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics)
        return history


@torch.no_grad()
def evaluate(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    transform: Transform | None = None,
    amp: bool = False,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``module`` on (x, y); of ``Replicas``, the means over the replicas."""
    module.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for xb, yb in batches(x, y, max(batch_size, 512)):
        if transform is not None:
            xb = transform(xb)
        with autocast(x.device, amp):
            logits = as_replicas(module(xb)).float()
        replicas = logits.shape[0]
        loss_sum += F.cross_entropy(logits.flatten(0, 1), yb.repeat(replicas), reduction="sum") / replicas
        correct += (logits.argmax(dim=-1) == yb).sum() / replicas
    n = max(int(x.shape[0]), 1)
    return loss_sum.item() / n, correct.item() / n
