"""After full training: kernel statistics, the learned width profile, pictures and the checkpoint.

``analyse`` measures; ``write_analysis`` puts the results in a folder (JSON, CSV, PNGs), which
the caller logs as MLflow artifacts (``search train``, the second phase of ``search run``) or
leaves on disk (``search inspect``). Checkpoints hold only tensors and plain values, and are
read back with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models import ConvNet, format_widths
from models.kernels import DEFAULT_THRESHOLD, LayerStats, layer_stats, lazy_drop, learned_widths
from search import pictures
from search.data import TensorData

CHECKPOINT_FORMAT = 1
CHECKPOINT_FILE = "model.pt"
FEATURE_IMAGES = 4
DEFAULT_IMAGES = 512
PROBE_IMAGES = 32  # a timed ablation pass on this many images sizes the real one
MIN_IMAGES = 64  # fewer than this, and one image moves an ablation by over 1.5 points (below 1/threshold
# images, 200 at the default, "lazy" means that zeroing loses no image at all)
PICTURES_S = 2.0  # writing the PNGs of a mid-sized net takes about 0.5 s on 2 CPU threads


@dataclass(frozen=True)
class Analysis:
    widths: tuple[int, ...]
    stats: tuple[LayerStats, ...]
    images: int
    seconds: float
    lazy_drop: float  # accuracy drop on those images with every layer's lazy kernels zeroed together

    @property
    def learned_widths(self) -> tuple[int, ...]:
        return learned_widths(list(self.stats))

    def summary(self) -> dict[str, Any]:
        """Per layer: searched and learned width, lazy count, mean norm and entropy (for JSON)."""
        return {
            "widths": format_widths(self.widths),
            "learned_widths": format_widths(self.learned_widths),
            "threshold": self.stats[0].threshold if self.stats else DEFAULT_THRESHOLD,
            "images": self.images,
            "lazy_drop": self.lazy_drop,
            "layers": [
                {
                    "layer": s.layer + 1,
                    "width": s.width,
                    "learned_width": s.learned_width,
                    "lazy": s.width - s.learned_width,
                    "mean_norm": sum(s.norm) / s.width,
                    "mean_entropy": sum(s.entropy) / s.width,
                    "max_importance": max(s.importance),
                    **{f"mean_{name}": sum(v) / s.width for name, v in s.symmetry.items()},
                }
                for s in self.stats
            ],
        }


def analyse(
    model: ConvNet,
    data: TensorData,
    images: int = DEFAULT_IMAGES,
    threshold: float = DEFAULT_THRESHOLD,
    seconds: float | None = None,
) -> Analysis | None:
    """Kernel statistics of ``model`` on the first ``images`` validation images.

    With ``seconds``, the ablations are timed on ``PROBE_IMAGES`` images first and the image
    count is cut to what fits (``Analysis.images`` says how many were used); ``None`` when
    not even ``MIN_IMAGES`` fit (or all of ``images``, when fewer are asked for). A probe that
    says too few fit is timed once more, warm, before the analysis is given up.
    """
    start = time.perf_counter()
    count = min(images, len(data.y_val))
    if seconds is not None:
        probe = min(PROBE_IMAGES, count)

        def per_image() -> float:  # seconds of an ablation pass per image, timed on ``probe`` images
            began = time.perf_counter()
            layer_stats(model, data.x_val[:probe], data.y_val[:probe], threshold)
            return (time.perf_counter() - began) / probe

        def fitting(rate: float) -> int:
            return min(count, int((seconds - (time.perf_counter() - start)) / rate))

        fewest = min(MIN_IMAGES, images, len(data.y_val))  # fewer than asked for, and too few: skipped
        rate = per_image()
        if fitting(rate) < fewest and time.perf_counter() - start < seconds:
            rate = per_image()  # the first pass paid one-time costs too (a GPU's kernels for new shapes)
        count = fitting(rate)
        if count < fewest:
            return None
    x, y = data.x_val[:count], data.y_val[:count]
    stats = layer_stats(model, x, y, threshold)
    return Analysis(model.widths, tuple(stats), count, time.perf_counter() - start, lazy_drop(model, stats, x, y))


def write_analysis(model: ConvNet, analysis: Analysis, data: TensorData, folder: Path) -> list[Path]:
    """kernels.json (summary), kernels.csv (every kernel) and the pictures, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernels.json").write_text(json.dumps(analysis.summary(), indent=2))
    with open(folder / "kernels.csv", "w", newline="") as handle:
        rows = [row for s in analysis.stats for row in s.rows()]
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    written = [folder / "kernels.json", folder / "kernels.csv"]
    written.append(pictures.width_bars(analysis.widths, analysis.learned_widths, folder / "widths.png"))
    written.append(pictures.first_layer_filters(model, analysis.stats[0], folder / "filters_layer1.png"))
    for stats in analysis.stats:
        written.append(pictures.kernel_grid(model, stats, folder / f"kernels_layer{stats.layer + 1}.png"))
    written += pictures.feature_maps(model, data.x_val[:FEATURE_IMAGES], analysis.stats, folder)
    return written


# -- checkpoints --------------------------------------------------------------------


def save_checkpoint(model: ConvNet, path: Path, meta: dict[str, Any]) -> Path:
    """The weights, the architecture (``ConvNet.spec()``) and plain metadata (e.g. the data settings)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": CHECKPOINT_FORMAT, "spec": model.spec(), "state_dict": state, "meta": meta}, path)
    return path


def load_checkpoint(path: Path) -> tuple[ConvNet, dict[str, Any]]:
    """Rebuild the ConvNet of a checkpoint; only tensors and plain values are unpickled."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a search checkpoint (format {CHECKPOINT_FORMAT})")
    model = ConvNet(**payload["spec"])
    model.load_state_dict(payload["state_dict"])
    return model, dict(payload["meta"])
