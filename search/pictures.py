"""PNG pictures of a trained ConvNet: filters, kernels by importance, feature maps, widths.

Each picture is one mosaic drawn with a single ``imshow`` (hundreds of kernels stay fast),
on ``matplotlib.figure.Figure`` without pyplot, so no GUI backend or global state is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from models import ConvNet
from models.kernels import LayerStats

if TYPE_CHECKING:
    from search.validate import SweepRow

GAP = 1  # pixels between cells of a mosaic
FEATURE_CHANNELS = 16  # most important channels shown per layer in the feature maps
DPI = 110


def _mosaic(cells: np.ndarray, columns: int) -> np.ndarray:
    """(n, h, w[, 3]) cells -> one image with NaN (or white) gaps, ``columns`` cells a row."""
    n, h, w = cells.shape[:3]
    rows = max(1, -(-n // columns))
    shape = (rows * (h + GAP) - GAP, columns * (w + GAP) - GAP, *cells.shape[3:])
    image = np.full(shape, np.nan if cells.ndim == 3 else 1.0, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, columns)
        image[r * (h + GAP) : r * (h + GAP) + h, c * (w + GAP) : c * (w + GAP) + w] = cells[i]
    return image


def _columns(n: int) -> int:
    return max(1, min(n, int(np.ceil(np.sqrt(n * 2)))))


def _symmetric_scale(cells: np.ndarray) -> np.ndarray:
    """Each cell divided by its largest absolute value (all-zero cells stay zero)."""
    peak = np.abs(cells).reshape(len(cells), -1).max(axis=1)
    return cells / np.where(peak > 0, peak, 1.0).reshape(-1, *([1] * (cells.ndim - 1)))


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def first_layer_filters(model: ConvNet, stats: LayerStats, path: Path) -> Path:
    """The first conv layer's filters, most important first: RGB for 3 input channels, else the mean channel."""
    weight = model.convs()[0].weight.detach().float().cpu().numpy()[stats.order()]
    if weight.shape[1] == 3:
        cells = weight.transpose(0, 2, 3, 1)  # (n, kh, kw, rgb)
        low = cells.reshape(len(cells), -1).min(axis=1).reshape(-1, 1, 1, 1)
        high = cells.reshape(len(cells), -1).max(axis=1).reshape(-1, 1, 1, 1)
        image = _mosaic((cells - low) / np.where(high > low, high - low, 1.0), _columns(len(cells)))
        kwargs: dict[str, object] = {}
    else:
        image = _mosaic(_symmetric_scale(weight.mean(axis=1)), _columns(len(weight)))
        kwargs = {"cmap": "RdBu_r", "vmin": -1, "vmax": 1}
    figure = Figure(figsize=(4, 4))
    axes = figure.add_subplot()
    axes.imshow(image, interpolation="nearest", **kwargs)
    axes.set_axis_off()
    colour = "RGB" if weight.shape[1] == 3 else "mean over input channels, red > 0 > blue"
    axes.set_title(f"layer 1 filters ({colour}), by importance", fontsize=8)
    return _save(figure, path)


def kernel_grid(model: ConvNet, stats: LayerStats, path: Path) -> Path:
    """One layer's kernels sorted by importance; each cell is the 3x3 slice of the input channel
    with the largest norm; lazy kernels are boxed in grey."""
    weight = model.convs()[stats.layer].weight.detach().float().cpu()
    order = stats.order()
    strongest = weight.flatten(2).norm(dim=2).argmax(dim=1)  # (out,)
    cells = weight[torch.arange(len(weight)), strongest].numpy()[order]
    columns = _columns(len(cells))
    figure = Figure(figsize=(5, 5))
    axes = figure.add_subplot()
    axes.imshow(_mosaic(_symmetric_scale(cells), columns), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    h, w = cells.shape[1:]
    for rank, index in enumerate(order):
        if stats.lazy[index]:
            r, c = divmod(rank, columns)
            axes.add_patch(Rectangle((c * (w + GAP) - 0.5, r * (h + GAP) - 0.5), w, h, fill=False,
                                     edgecolor="0.4", linewidth=1.2))
    axes.set_axis_off()
    axes.set_title(
        f"layer {stats.layer + 1}: {stats.width} kernels by importance, {stats.width - stats.learned_width} lazy "
        "(boxed)",
        fontsize=8,
    )
    return _save(figure, path)


@torch.inference_mode()
def feature_maps(model: ConvNet, images: torch.Tensor, stats: Sequence[LayerStats], folder: Path) -> list[Path]:
    """Per layer, the most important channels' outputs for a few images (one row per image)."""
    was_training = model.training
    model.eval()
    paths = []
    hidden = images
    for layer, block in enumerate(model.blocks):
        hidden = block(hidden)
        picked = stats[layer].order()[:FEATURE_CHANNELS]
        maps = hidden[:, picked].float().cpu().numpy()  # (images, channels, h, w)
        peak = maps.reshape(len(maps), len(picked), -1).max(axis=2)[..., None, None]
        cells = (maps / np.where(peak > 0, peak, 1.0)).reshape(-1, *maps.shape[2:])
        figure = Figure(figsize=(min(12, 0.6 * len(picked) + 1), 0.7 * len(maps) + 0.6))
        axes = figure.add_subplot()
        axes.imshow(_mosaic(cells, len(picked)), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        axes.set_axis_off()
        axes.set_title(f"layer {layer + 1}: {len(picked)} most important channels, one row per image", fontsize=8)
        paths.append(_save(figure, folder / f"feature_maps_layer{layer + 1}.png"))
    model.train(was_training)
    return paths


def width_bars(searched: Sequence[int], learned: Sequence[int], path: Path) -> Path:
    """Searched against learned width per layer."""
    figure = Figure(figsize=(5, 3))
    axes = figure.add_subplot()
    x = np.arange(len(searched))
    axes.bar(x - 0.2, searched, 0.4, label="searched")
    axes.bar(x + 0.2, learned, 0.4, label="learned (not lazy)")
    axes.set_xticks(x, [f"conv{i + 1}" for i in x])
    axes.set_ylabel("kernels")
    axes.legend(fontsize=8)
    axes.set_title("searched vs learned width per layer", fontsize=9)
    return _save(figure, path)


def score_scatter(scores: Sequence[float], accuracy: Sequence[float], scorer: str, rho: float, tau: float,
                  path: Path) -> Path:
    """One scorer's score against full accuracy, one point per candidate."""
    figure = Figure(figsize=(4, 3.2))
    axes = figure.add_subplot()
    finite = [(s, a) for s, a in zip(scores, accuracy, strict=True) if np.isfinite(s)]
    if finite:
        axes.scatter([s for s, _ in finite], [a for _, a in finite], s=14)
    if scorer == "synflow" and finite and min(s for s, _ in finite) > 0:
        axes.set_xscale("log")
    axes.set_xlabel(f"{scorer} score")
    axes.set_ylabel("full-training val_acc")
    axes.set_title(f"{scorer}: Spearman {rho:.3f}, Kendall {tau:.3f}", fontsize=9)
    return _save(figure, path)


def frozen_sweep_plot(rows: Sequence[SweepRow], widths: str, path: Path) -> Path:
    """Accuracy and seconds per epoch (cached and not) against the number of frozen layers."""
    frozen = [r.frozen_layers for r in rows]
    figure = Figure(figsize=(5, 3.2))
    axes = figure.add_subplot()
    axes.plot(frozen, [r.epoch_s_cached for r in rows], "o-", label="s/epoch, cached")
    axes.plot(frozen, [r.epoch_s_uncached for r in rows], "s--", label="s/epoch, not cached")
    axes.set_xlabel("frozen random conv layers (k)")
    axes.set_ylabel("seconds per epoch")
    axes.set_xticks(frozen)
    right = axes.twinx()
    right.plot(frozen, [r.val_acc for r in rows], "^-", color="tab:green", label="val_acc")
    right.set_ylabel("val_acc", color="tab:green")
    axes.legend(fontsize=7, loc="upper center")
    axes.set_title(f"frozen-layer sweep of {widths}", fontsize=9)
    return _save(figure, path)
