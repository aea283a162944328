"""From the learned width profile to a slimmer network: remove the lazy kernels, fine-tune, measure.

``slim_model`` is the measurement (no side effects): the kernel analysis names the lazy
kernels, ``models.slim`` removes them (all at once: the network the layer-by-layer ablations
ended with, ``models.kernels.lazy_drop`` below the trained one), a short fine-tune (by default
at half the full recipe's peak rate, ``fine_tune_rate``) lets the rest adapt, and
parameters, multiply-adds, latency and validation accuracy are measured before and after.
``slim_run`` (``search slim RUN_ID``, and ``search run --slim`` for the winner) loads a logged
model and records the result as a child MLflow run holding the slimmed weights.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from models import ConvNet, format_widths
from models.kernels import LayerStats
from models.slim import slim
from search.analysis import analyse
from search.config import FullTrainConfig, StoreConfig
from search.cost import count_macs, latency_ms
from search.data import TensorData
from search.full import load_logged_model, log_model
from search.results import SlimReport
from search.train import CosineDecay, EpochMetrics, StopTraining, TrainSettings, evaluate, fit

FINE_TUNE_SHARE = 0.5  # the default fine-tuning rate, as a share of the recipe's peak rate


def fine_tune_rate(full: FullTrainConfig) -> float:
    """The default fine-tuning rate: half the full recipe's peak. Its final rate (``final_rate``)
    is ~0 under the cosine decay, and recovered little of what removing the kernels cost
    (``benchmarks/slim_vs_scratch.py``).

    Example:
        >>> fine_tune_rate(FullTrainConfig(lr=2e-3))
        0.001
    """
    return full.lr * FINE_TUNE_SHARE


def final_rate(full: FullTrainConfig) -> float:
    """The learning rate of the full recipe's last epoch (its start): where fine-tuning continues.

    Example:
        >>> round(final_rate(FullTrainConfig(lr=1e-3, stages=1, epochs_per_stage=2)), 6)
        0.0005
    """
    if full.decay != "cosine":
        return full.lr
    total = full.total_epochs
    return full.lr * CosineDecay(total).factor(total - 1)


def slim_model(
    model: ConvNet,
    data: TensorData,
    stats: list[LayerStats],
    epochs: int,
    lr: float,
    batch_size: int = 128,
    seed: int = 0,
    latency_batch: int = 64,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    deadline: float | None = None,
) -> tuple[ConvNet, SlimReport]:
    """Remove ``model``'s lazy kernels (``stats``), fine-tune ``epochs`` at ``lr``, measure both.
    With ``deadline`` (``time.monotonic()``), fine-tuning stops after the epoch that reaches it."""
    start = time.monotonic()
    device = data.x_val.device
    model = model.to(device)
    shape = tuple(data.x_val.shape[1:])
    _, val_acc = evaluate(model, data.x_val, data.y_val, batch_size)
    small = slim(model, [layer.kept for layer in stats]).to(device)
    _, removed_acc = evaluate(small, data.x_val, data.y_val, batch_size)
    history: list[EpochMetrics] = []

    def epoch_done(metrics: EpochMetrics) -> None:
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
        if deadline is not None and time.monotonic() >= deadline:
            raise StopTraining(f"fine-tuning stopped after epoch {metrics.epoch}: budget spent")

    if epochs > 0:
        settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        try:
            fit(small, data.x_train, data.y_train, data.x_val, data.y_val, settings, on_epoch=epoch_done)
        except StopTraining:
            pass
    tuned_acc = history[-1].val_acc if history else removed_acc  # fit evaluated every epoch
    report = SlimReport(
        widths=model.widths, slim_widths=small.widths,
        params=sum(p.numel() for p in model.parameters()), slim_params=sum(p.numel() for p in small.parameters()),
        macs=count_macs(model), slim_macs=count_macs(small),
        latency_ms=latency_ms(model, shape, latency_batch, device),
        slim_latency_ms=latency_ms(small, shape, latency_batch, device),
        val_acc=val_acc, removed_acc=removed_acc, tuned_acc=tuned_acc, epochs=len(history), lr=lr,
        seconds=time.monotonic() - start,
    )
    return small, report


def slim_run(
    store: StoreConfig,
    run_id: str,
    full: FullTrainConfig,
    epochs: int,
    lr: float | None = None,
    device: torch.device | None = None,
    data_dir: Path | None = None,
    threshold: float | None = None,
    deadline: float | None = None,
) -> SlimReport:
    """Slim the model logged by full-training run ``run_id``; record it as a child run of it."""
    logged = load_logged_model(store, run_id, data_dir)
    data = logged.data.to(device or torch.device("cpu"))
    params = logged.run.data.params
    threshold = float(params.get("lazy_threshold", full.lazy_threshold)) if threshold is None else threshold
    analysis = analyse(logged.model.to(data.x_val.device), data, full.analysis_images, threshold)
    assert analysis is not None  # no time limit
    rate = fine_tune_rate(full) if lr is None else lr
    tracker = logged.tracker
    child = tracker.start_run(
        f"slim-{format_widths(logged.model.widths)}",
        parent_id=run_id,
        params={"widths": format_widths(logged.model.widths), "fine_tune_epochs": epochs, "fine_tune_lr": rate,
                "lazy_threshold": threshold, "analysis_images": analysis.images},
        tags={"phase": "slim", "slimmed_run": run_id},
    )
    with tracker.ending(child):
        small, report = slim_model(
            logged.model, data, list(analysis.stats), epochs, rate, full.batch_size, int(logged.meta["seed"]),
            on_epoch=lambda m: tracker.log_metrics(child, m.as_metrics(), step=m.epoch), deadline=deadline)
        report = dataclasses.replace(report, run_id=child)
        tracker.log_params(child, {"slim_widths": format_widths(report.slim_widths)})
        tracker.log_metrics(child, report.metrics())
        log_model(tracker, child, small, {**logged.meta, "val_acc": report.tuned_acc,
                                          "target": format_widths(report.slim_widths), "slimmed_from": run_id})
        tracker.log_text(child, json.dumps(report.summary(), indent=2), "slim.json")
    tracker.set_tags(run_id, {"slim_run_id": child, "slim_widths": format_widths(report.slim_widths)})
    return report
