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
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from models import ConvNet, format_widths
from models.kernels import LayerStats
from models.symmetry import LayerPlan

if TYPE_CHECKING:
    from search.results import FullSummary, SimplifyReport, TrialSummary
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


def _strongest_slices(weight: torch.Tensor) -> torch.Tensor:
    """Per kernel, the input channel whose 3x3 slice has the largest norm."""
    return weight.flatten(2).norm(dim=2).argmax(dim=1)


def _grid_on(axes: Axes, cells: np.ndarray, boxed: Sequence[bool], title: str) -> None:
    """Kernel cells (each scaled to its own peak) in a mosaic; the cells where ``boxed`` is true
    framed in grey."""
    columns = _columns(len(cells))
    axes.imshow(_mosaic(_symmetric_scale(cells), columns), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    h, w = cells.shape[1:]
    for rank, box in enumerate(boxed):
        if box:
            r, c = divmod(rank, columns)
            axes.add_patch(Rectangle((c * (w + GAP) - 0.5, r * (h + GAP) - 0.5), w, h, fill=False,
                                     edgecolor="0.4", linewidth=1.2))
    axes.set_axis_off()
    axes.set_title(title, fontsize=8)


def kernel_grid(model: ConvNet, stats: LayerStats, path: Path) -> Path:
    """One layer's kernels sorted by importance; each cell is the 3x3 slice of the input channel
    with the largest norm; lazy kernels are boxed in grey."""
    weight = model.convs()[stats.layer].weight.detach().float().cpu()
    order = stats.order()
    cells = weight[torch.arange(len(weight)), _strongest_slices(weight)].numpy()[order]
    figure = Figure(figsize=(5, 5))
    _grid_on(figure.add_subplot(), cells, [stats.lazy[i] for i in order],
             f"layer {stats.layer + 1}: {stats.width} kernels by importance, {stats.width - stats.learned_width} lazy "
             "(boxed)")
    return _save(figure, path)


def simplified_kernels(original: ConvNet, simplified: ConvNet, plan: LayerPlan, path: Path) -> Path:
    """One layer's kernels before and after simplification, side by side, most symmetric first;
    each cell is the original's strongest 3x3 slice; the snapped kernels are boxed in grey."""
    before = original.convs()[plan.layer].weight.detach().float().cpu()
    after = simplified.convs()[plan.layer].weight.detach().float().cpu()
    order = sorted(range(len(before)), key=lambda k: (-plan.score[k], k))
    rows, slices = torch.arange(len(before)), _strongest_slices(before)
    boxed = [plan.chosen[k] for k in order]
    figure = Figure(figsize=(9, 4.5))
    _grid_on(figure.add_subplot(1, 2, 1), before[rows, slices].numpy()[order], boxed,
             f"layer {plan.layer + 1}: trained, most symmetric first")
    _grid_on(figure.add_subplot(1, 2, 2), after[rows, slices].numpy()[order], boxed,
             f"simplified: {plan.simplified} of {len(before)} snapped (boxed), after fine-tuning")
    return _save(figure, path)


def simplify_sweep(reports: Sequence[SimplifyReport], path: Path) -> Path:
    """Accuracy against the share of kernel weights removed, one point per threshold; the
    control (nothing snapped, fine-tuned the same) as a line."""
    snapped = sorted((r for r in reports if r.threshold is not None), key=lambda r: r.removed_share)
    figure = Figure(figsize=(5.5, 3.6))
    axes = figure.add_subplot()
    removed = [100 * r.removed_share for r in snapped]
    axes.axhline(reports[0].val_acc, color="0.5", linestyle=":", label="trained")
    for r in reports:
        if r.threshold is None:
            axes.axhline(r.tuned_acc, color="tab:green", linestyle="--", label="fine-tuned, nothing snapped")
    axes.plot(removed, [r.projected_acc for r in snapped], "o--", color="tab:red", label="right after snapping")
    axes.plot(removed, [r.tuned_acc for r in snapped], "o-", color="tab:blue", label="after fine-tuning")
    labelled = None  # from the right; a point within 2 % of the last labelled one keeps no label
    for r, x in reversed(list(zip(snapped, removed, strict=True))):
        if labelled is None or labelled - x > 2:
            axes.annotate(f"S={r.threshold:g}", (x, r.tuned_acc), textcoords="offset points", xytext=(3, 4),
                          fontsize=7)
            labelled = x
    axes.set_xlabel("free kernel weights removed (%)")
    axes.set_ylabel("validation accuracy")
    axes.set_title(f"{format_widths(reports[0].widths)}: simplification sweep", fontsize=9)
    axes.legend(fontsize=7)
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


def _widths_on(axes: Axes, searched: Sequence[int], learned: Sequence[int] | None, title: str) -> None:
    x = np.arange(len(searched))
    axes.bar(x - 0.2, searched, 0.4, label="searched")
    if learned is not None:
        axes.bar(x + 0.2, learned, 0.4, label="learned (not lazy)")
    axes.set_xticks(x, [f"conv{i + 1}" for i in x])
    axes.set_ylabel("kernels")
    axes.legend(fontsize=7)
    axes.set_title(title, fontsize=8)


def width_bars(searched: Sequence[int], learned: Sequence[int], path: Path) -> Path:
    """Searched against learned width per layer."""
    figure = Figure(figsize=(5, 3))
    _widths_on(figure.add_subplot(), searched, learned, "searched vs learned width per layer")
    return _save(figure, path)


# -- the parent run of a search: trials and candidates side by side ------------------


def trial_scores(trials: Sequence[TrialSummary], full: Sequence[FullSummary], scorer: str, path: Path) -> Path:
    """Each trial's score against its trained parameters: complete trials in colour, pruned ones
    grey at the score they had reached, the fully trained candidates ringed."""
    figure = Figure(figsize=(5.5, 3.6))
    axes = figure.add_subplot()
    for state, style in (("PRUNED", {"c": "0.7", "marker": "x"}), ("COMPLETE", {"c": "tab:blue", "marker": "o"})):
        shown = [t for t in trials if t.state == state and t.reached is not None and t.trained_params]
        if shown:
            axes.scatter([t.trained_params for t in shown], [t.reached for t in shown], s=16,
                         label=state.lower(), **style)
    numbers = {f.trial for f in full}
    ringed = [t for t in trials if t.number in numbers and t.reached is not None and t.trained_params]
    if ringed:
        axes.scatter([t.trained_params for t in ringed], [t.reached for t in ringed], s=90, facecolors="none",
                     edgecolors="tab:red", label="trained in full")
    axes.set_xscale("log")
    axes.set_xlabel("trained parameters")
    axes.set_ylabel(f"{scorer} score" if scorer != "proxy" else "proxy score (val_acc less its width penalty)")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7)
    axes.set_title(f"{len(trials)} trials: score against size", fontsize=9)
    return _save(figure, path)


def epoch_times(trials: Sequence[TrialSummary], full: Sequence[FullSummary], path: Path) -> Path:
    """Seconds per training epoch: each proxy trial by number (left), each full candidate by stage (right)."""
    figure = Figure(figsize=(9, 3.4))
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    for state, colour in (("PRUNED", "0.6"), ("COMPLETE", "tab:blue"), ("FAIL", "tab:red")):
        shown = [t for t in trials if t.state == state and t.epoch_s is not None]
        if shown:
            left.bar([t.number for t in shown], [t.epoch_s for t in shown], color=colour, label=state.lower())
    if left.get_legend_handles_labels()[0]:
        left.legend(fontsize=7)
    left.xaxis.get_major_locator().set_params(integer=True)
    left.set_xlabel("trial")
    left.set_ylabel("seconds per epoch")
    left.set_title("proxy: seconds per epoch of each trial", fontsize=9)
    trained = [f for f in full if f.stage_epoch_s]
    stages = max((len(f.stage_epoch_s) for f in trained), default=0)
    for stage in range(stages):
        offset = (stage - (stages - 1) / 2) * 0.8 / max(stages, 1)
        values = [f.stage_epoch_s[stage] if stage < len(f.stage_epoch_s) else 0.0 for f in trained]
        right.bar(np.arange(len(trained)) + offset, values, 0.8 / max(stages, 1), label=f"stage {stage + 1}")
    right.set_xticks(np.arange(len(trained)), [f"#{f.rank}\n{f.label}" for f in trained], fontsize=6)
    right.set_ylabel("seconds per epoch")
    if stages:
        right.legend(fontsize=7)
    right.set_title("full training: seconds per epoch by stage", fontsize=9)
    return _save(figure, path)


def searched_vs_learned(full: Sequence[FullSummary], path: Path) -> Path:
    """Searched and learned widths of every fully trained candidate, one panel each."""
    shown = [f for f in full if f.val_acc is not None] or list(full)
    figure = Figure(figsize=(3.6 * max(1, len(shown)), 3))
    panels = figure.subplots(1, max(1, len(shown)), squeeze=False)[0]
    for axes, candidate in zip(panels, shown, strict=False):
        accuracy = f", val_acc {candidate.val_acc:.4f}" if candidate.val_acc is not None else ""
        _widths_on(axes, candidate.widths, candidate.learned_widths, f"#{candidate.rank} {candidate.label}{accuracy}")
    return _save(figure, path)


COST_LABELS = {"params": "parameters (all layers)", "macs": "multiply-adds per image",
               "latency": "latency (ms per batch)"}


def pareto_picture(trials: Sequence[TrialSummary], front: Sequence[TrialSummary], full: Sequence[FullSummary],
                   cost: str, path: Path) -> Path:
    """Proxy accuracy against cost: every trial grey (pruned ones at the accuracy they had
    reached), the front in colour joined by its steps, the fully trained members ringed."""
    figure = Figure(figsize=(5.5, 3.6))
    axes = figure.add_subplot()
    shown = [t for t in trials if t.reached is not None and t.cost(cost) is not None]
    if shown:
        axes.scatter([t.cost(cost) for t in shown], [t.reached for t in shown], s=14, c="0.7", label="trials")
    if front:
        axes.step([t.cost(cost) for t in front], [t.score for t in front], where="post", c="tab:blue", lw=1)
        axes.scatter([t.cost(cost) for t in front], [t.score for t in front], s=24, c="tab:blue",
                     label="Pareto front", zorder=3)
    numbers = {f.trial for f in full}
    ringed = [t for t in front if t.number in numbers]
    if ringed:
        axes.scatter([t.cost(cost) for t in ringed], [t.score for t in ringed], s=110, facecolors="none",
                     edgecolors="tab:red", label="trained in full", zorder=4)
    axes.set_xscale("log")
    axes.set_xlabel(COST_LABELS[cost])
    axes.set_ylabel("proxy score (val_acc less its width penalty)")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7)
    axes.set_title(f"{len(trials)} trials, {len(front)} on the front", fontsize=9)
    return _save(figure, path)


def search_comparison(trials: Sequence[TrialSummary], full: Sequence[FullSummary], scorer: str,
                      folder: Path, front: Sequence[TrialSummary] | None = None, cost: str = "params") -> list[Path]:
    """The parent run's pictures: score against size, epoch times, searched vs learned widths,
    and for a pareto search the front."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [trial_scores(trials, full, scorer, folder / "trial_scores.png"),
               epoch_times(trials, full, folder / "epoch_times.png")]
    if front is not None:
        written.append(pareto_picture(trials, front, full, cost, folder / "pareto.png"))
    if full:
        written.append(searched_vs_learned(full, folder / "widths.png"))
    return written


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
