"""Which kernels of a trained ConvNet do work: per-kernel statistics and the learned width profile.

A *kernel* is one output channel of a conv layer: its weights ``(in_channels, 3, 3)`` and bias.

- ``norm``: L2 norm of the weights.
- ``entropy``: Shannon entropy (bits) of a histogram of the kernel's values over their own
  range; 0 for a constant (or zero) kernel, at most log2(bins) for values spread evenly.
- symmetry scores, each ``1 - |w - T(w)| / (|w| + |T(w)|)`` in [0, 1], 1 when the kernel
  equals its transform ``T`` (a zero kernel counts as symmetric): ``mirror_lr`` (left-right
  flip), ``mirror_ud`` (up-down flip), ``same_rows`` and ``same_cols`` (rolled by one row or
  column: 1 when all rows, or all columns, are identical), ``rot90`` and ``rot180``.
- ``importance``: the drop in validation accuracy when the kernel (weights and bias) is zeroed,
  with the lazy kernels of the layers below already zeroed (below). Zeroing a kernel zeroes its
  channel after ReLU and max-pool, so the layers below run once and the ablated copies of the
  layer's output go through the layers above in large batches.

The *lazy* kernels of a layer are the most that can be zeroed **together** while accuracy
drops by less than a threshold, taken least important first: kernels are co-adapted, and
many that each cost nothing alone can cost a lot together (a network trained at its full
width spreads the work over more kernels). Layers are measured first to last, each in the
network whose lower layers have already lost their lazy kernels, so a layer's drop is what
removing its group costs on top of the groups below: the network with every lazy kernel
zeroed is less than ``layers x threshold`` below the trained one (``lazy_drop`` measures it).
The count of kernels that are not lazy, per layer, is the *learned width profile*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from models.convnet import ConvNet

DEFAULT_BINS = 16
DEFAULT_THRESHOLD = 0.005
ABLATION_BYTES = 64 * 2**20  # activations of one batch of ablated copies
FIRST_GROUPS = 4  # the group pass measures this many groups first, then twice as many each time
SYMMETRIES = ("mirror_lr", "mirror_ud", "same_rows", "same_cols", "rot90", "rot180")


def kernel_norms(weight: torch.Tensor) -> torch.Tensor:
    """L2 norm of each output kernel of a conv weight ``(out, in, kh, kw)``."""
    return weight.detach().flatten(1).norm(dim=1)


def value_entropy(weight: torch.Tensor, bins: int = DEFAULT_BINS) -> torch.Tensor:
    """Entropy in bits of each kernel's value histogram (``bins`` bins over its min..max).

    Example:
        >>> w = torch.zeros(2, 1, 3, 3); w[1, 0, 0, :2] = 1.0  # constant kernel; two values 2:7
        >>> [round(v, 3) for v in value_entropy(w).tolist()]
        [0.0, 0.764]
    """
    flat = weight.detach().flatten(1).float()
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny)
    index = (scaled * bins).long().clamp_(0, bins - 1)
    counts = torch.zeros(flat.shape[0], bins, device=flat.device).scatter_add_(1, index, torch.ones_like(flat))
    p = counts / flat.shape[1]
    return -(p * torch.log2(p.clamp_min(1e-30))).sum(dim=1) + 0.0  # + 0.0 turns -0.0 into 0.0


TRANSFORMS = {
    "mirror_lr": lambda w: w.flip(-1),
    "mirror_ud": lambda w: w.flip(-2),
    "same_rows": lambda w: w.roll(1, dims=-2),
    "same_cols": lambda w: w.roll(1, dims=-1),
    "rot90": lambda w: w.rot90(1, dims=(-2, -1)),
    "rot180": lambda w: w.rot90(2, dims=(-2, -1)),
}


def transform(symmetry: str, w: torch.Tensor) -> torch.Tensor:
    """``w`` (``(..., kh, kw)``) under the transform that defines ``symmetry`` (one of SYMMETRIES)."""
    return TRANSFORMS[symmetry](w)


def symmetry_scores(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per kernel, how close it is to its mirror images, rolls and rotations (1 = identical).

    Example:
        >>> w = torch.tensor([[1.0, 2.0, 1.0], [0.0, 5.0, 0.0], [1.0, 2.0, 1.0]]).view(1, 1, 3, 3)
        >>> {k: round(v.item(), 3) for k, v in symmetry_scores(w).items() if k.startswith("mirror")}
        {'mirror_lr': 1.0, 'mirror_ud': 1.0}
    """
    w = weight.detach().float()
    norm = w.flatten(1).norm(dim=1)
    scores = {}
    for name in SYMMETRIES:
        transformed = transform(name, w)
        gap = (w - transformed).flatten(1).norm(dim=1)
        total = norm + transformed.flatten(1).norm(dim=1)
        scores[name] = torch.where(total > 0, 1 - gap / total.clamp_min(1e-30), torch.ones_like(total))
    return scores


def ablation_importance(
    model: ConvNet, layer: int, x: torch.Tensor, y: torch.Tensor, max_bytes: int = ABLATION_BYTES,
    keep_below: Sequence[torch.Tensor] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """(accuracy drop, loss rise) on (x, y) when each kernel of conv ``layer`` is zeroed."""
    channels = model.convs()[layer].out_channels
    return ablate(model, layer, torch.eye(channels, dtype=torch.bool), x, y, max_bytes, keep_below)


def group_drops(model: ConvNet, layer: int, order: list[int], x: torch.Tensor, y: torch.Tensor,
                max_bytes: int = ABLATION_BYTES, keep_below: Sequence[torch.Tensor] = (),
                stop_at: float | None = None) -> torch.Tensor:
    """Accuracy drop when the first 1, 2, ..., all kernels of ``order`` are zeroed together; with
    ``stop_at``, only up to (a few past) the first group whose drop reaches it (see ``ablate``)."""
    channels = model.convs()[layer].out_channels
    masks = torch.zeros(len(order), channels, dtype=torch.bool)
    for count in range(len(order)):
        masks[count:, order[count]] = True
    return ablate(model, layer, masks, x, y, max_bytes, keep_below, stop_at)[0]


def _run_below(model: ConvNet, layer: int, x: torch.Tensor, keep_below: Sequence[torch.Tensor]) -> torch.Tensor:
    """The input of block ``layer``: the blocks below it, block ``i``'s output channels limited to
    ``keep_below[i]`` (bool per channel; layers past the end of ``keep_below`` keep every channel)."""
    hidden = x
    for i, block in enumerate(model.blocks[:layer]):
        hidden = block(hidden)
        if i < len(keep_below):
            hidden = hidden * keep_below[i].to(hidden.device)[None, :, None, None]
    return hidden


@torch.inference_mode()
def ablate(
    model: ConvNet, layer: int, masks: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
    max_bytes: int = ABLATION_BYTES, keep_below: Sequence[torch.Tensor] = (), stop_at: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(accuracy drop, loss rise) on (x, y) per row of ``masks`` (copies x channels, bool): the
    channels of conv ``layer`` that row zeroes; ``keep_below`` zeroes channels of the layers below
    in the network measured and in its baseline alike (see ``_run_below``).

    The blocks below ``layer`` run once; copies of the layer's output, each with its channels
    zeroed, go through the blocks above in batches of up to ``max_bytes`` of activations. With
    ``stop_at``, the rows go in batches of ``FIRST_GROUPS``, then twice as many each time, and
    the rest are skipped once a drop reaches ``stop_at``: the first rows come back, not all.
    """
    was_training = model.training
    model.eval()
    try:
        out = model.blocks[layer](_run_below(model, layer, x, keep_below))
        above = torch.nn.Sequential(*model.blocks[layer + 1 :], model.head)
        base_logits = above(out)
        base_acc = (base_logits.argmax(1) == y).float().mean()
        base_loss = F.cross_entropy(base_logits, y)

        masks = masks.to(out.device)
        per_copy = out.numel() * out.element_size()
        most = max(1, min(len(masks), max_bytes // max(per_copy, 1)))
        chunk = most if stop_at is None else min(most, FIRST_GROUPS)
        drops, rises = [], []
        start = 0
        while start < len(masks):
            keep = ~masks[start:start + chunk]  # (k, C)
            copies = out.unsqueeze(0) * keep[:, None, :, None, None]  # (k, N, C, H, W)
            logits = above(copies.flatten(0, 1)).view(len(keep), len(y), -1)
            accuracy = (logits.argmax(-1) == y).float().mean(1)
            loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(len(keep)), reduction="none")
            drops.append(base_acc - accuracy)
            rises.append(loss.view(len(keep), -1).mean(1) - base_loss)
            start += len(keep)
            if stop_at is not None:
                if bool((drops[-1] >= stop_at).any()):
                    break
                chunk = min(most, 2 * chunk)
        return torch.cat(drops).cpu(), torch.cat(rises).cpu()
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class LayerStats:
    """Every statistic of one conv layer's kernels, index = output channel."""

    layer: int  # 0-based
    width: int
    norm: tuple[float, ...]
    entropy: tuple[float, ...]
    symmetry: dict[str, tuple[float, ...]]
    importance: tuple[float, ...]  # accuracy drop when the kernel is zeroed
    loss_rise: tuple[float, ...]  # validation loss rise when the kernel is zeroed
    threshold: float
    # Accuracy drop when the 1, 2, ... least important kernels (order() reversed) are zeroed
    # together: measured up to (a few groups past) the first that reaches the threshold.
    group_drop: tuple[float, ...]

    @cached_property
    def removable(self) -> int:
        """How many of the least important kernels can be zeroed together within the threshold:
        the longest run of groups, from one kernel up, that lower accuracy by less than it (a
        group whose removal raises accuracy goes too)."""
        count = 0
        while count < len(self.group_drop) and self.group_drop[count] < self.threshold:
            count += 1
        return count

    @cached_property
    def lazy(self) -> tuple[bool, ...]:  # computed once: pictures and rows read it per kernel
        group = set(self.order()[self.width - self.removable:])
        return tuple(i in group for i in range(self.width))

    @cached_property
    def kept(self) -> tuple[int, ...]:
        """The kernels that are not lazy; where all are, the most important one stays (a slimmed
        network keeps a channel per layer)."""
        kept = tuple(i for i in range(self.width) if not self.lazy[i])
        return kept or (self.order()[0],)

    @property
    def learned_width(self) -> int:
        """Kernels that are not lazy: the layer's width less the group that can go together."""
        return self.width - self.removable

    def order(self) -> list[int]:
        """Kernel indices, most important first (ties broken by the loss rise)."""
        return _importance_order(self.importance, self.loss_rise)

    def rows(self) -> list[dict[str, float | int | bool]]:
        """One flat row per kernel, for a CSV."""
        rows = []
        for i in range(self.width):
            row: dict[str, float | int | bool] = {"layer": self.layer + 1, "kernel": i, "norm": self.norm[i],
                                                 "entropy": self.entropy[i]}
            row.update({name: values[i] for name, values in self.symmetry.items()})
            row.update(importance=self.importance[i], loss_rise=self.loss_rise[i], lazy=self.lazy[i])
            rows.append(row)
        return rows


def _importance_order(importance: tuple[float, ...], loss_rise: tuple[float, ...]) -> list[int]:
    return sorted(range(len(importance)), key=lambda i: (-importance[i], -loss_rise[i], i))


def _floats(values: torch.Tensor) -> tuple[float, ...]:
    return tuple(float(v) for v in values.tolist())


def layer_stats(
    model: ConvNet,
    x: torch.Tensor,
    y: torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    bins: int = DEFAULT_BINS,
) -> list[LayerStats]:
    """Statistics of every conv layer's kernels, ablations measured on (x, y), first layer to
    last, each with the lazy kernels of the layers below it zeroed (``LayerStats.kept``)."""
    stats: list[LayerStats] = []
    for layer, conv in enumerate(model.convs()):
        keep_below = keep_masks(stats)
        drop, rise = map(_floats, ablation_importance(model, layer, x, y, keep_below=keep_below))
        least_first = _importance_order(drop, rise)[::-1]
        stats.append(
            LayerStats(
                layer=layer,
                width=conv.out_channels,
                norm=_floats(kernel_norms(conv.weight)),
                entropy=_floats(value_entropy(conv.weight, bins)),
                symmetry={name: _floats(v) for name, v in symmetry_scores(conv.weight).items()},
                importance=drop,
                loss_rise=rise,
                threshold=threshold,
                group_drop=_floats(group_drops(model, layer, least_first, x, y, keep_below=keep_below,
                                               stop_at=threshold)),
            )
        )
    return stats


def keep_masks(stats: Sequence[LayerStats]) -> list[torch.Tensor]:
    """Per layer of ``stats``, a bool mask of the kernels it keeps (``LayerStats.kept``)."""
    masks = []
    for s in stats:
        mask = torch.zeros(s.width, dtype=torch.bool)
        mask[list(s.kept)] = True
        masks.append(mask)
    return masks


@torch.inference_mode()
def lazy_drop(model: ConvNet, stats: Sequence[LayerStats], x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy drop on (x, y) when every layer's lazy kernels are zeroed together (each layer
    keeping ``LayerStats.kept``): what the learned widths cost before any fine-tuning."""
    was_training = model.training
    model.eval()
    try:
        layers = len(model.blocks)
        full = model.head(_run_below(model, layers, x, ()))
        lazy = model.head(_run_below(model, layers, x, keep_masks(stats)))
        return float(((full.argmax(1) == y).float().mean() - (lazy.argmax(1) == y).float().mean()).item())
    finally:
        model.train(was_training)


def learned_widths(stats: list[LayerStats]) -> tuple[int, ...]:
    """The learned width profile: non-lazy kernels per layer (0 where a whole layer is lazy)."""
    return tuple(s.learned_width for s in stats)


def max_entropy(bins: int = DEFAULT_BINS) -> float:
    return math.log2(bins)
