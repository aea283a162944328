"""Kernel simplification: snap near-symmetric kernels to their exact symmetric form, freeze them,
let the rest adapt, and measure what it costs.

``simplify_model`` is the measurement (no side effects): every kernel whose best symmetry
score (``models.kernels.symmetry_scores``) is at least the threshold is replaced by its
projection onto that symmetry (``models.symmetry``), those kernels are held fixed (gradient
mask, and their values restored after every step), and the other kernels are fine-tuned
briefly. Accuracy is measured before, right after snapping and after fine-tuning, and the
conv layers' free kernel weights before and after. ``simplify_run`` (``search simplify
RUN_ID``) runs it for one threshold or a sweep on a logged model and records a child MLflow
run with the table, the pictures, and (for one threshold) the simplified weights.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from models import ConvNet, format_widths
from models.symmetry import Freeze, LayerPlan, plan, snap_
from search.config import ConfigError, FullTrainConfig, StoreConfig
from search.data import TensorData
from search.full import load_logged_model, log_model
from search.pictures import simplified_kernels, simplify_sweep
from search.results import SimplifyReport
from search.slim import fine_tune_rate
from search.train import TrainSettings, evaluate, fit


def simplify_model(
    model: ConvNet,
    data: TensorData,
    threshold: float | None,
    epochs: int,
    lr: float,
    layers: Sequence[int] | None = None,
    batch_size: int = 128,
    seed: int = 0,
    val_acc: float | None = None,
) -> tuple[ConvNet, SimplifyReport]:
    """Snap ``model``'s kernels whose best symmetry score is ``>= threshold`` (in ``layers``,
    0-based, when given), freeze them, fine-tune the rest ``epochs`` at ``lr``; ``model`` is not
    changed. Nothing snapped means nothing to adapt: no fine-tuning, the same accuracy. With
    ``threshold=None`` nothing is snapped and the whole network is fine-tuned all the same:
    the control that tells what fine-tuning alone does. ``val_acc``: the trained model's, when
    already measured (a sweep measures it once)."""
    model = model.to(data.x_val.device)
    plans = plan(model, torch.inf if threshold is None else threshold, layers)
    if threshold is not None and not any(p.simplified for p in plans):
        epochs = 0
    return snap_and_tune(model, data, plans, threshold, epochs, lr, batch_size, seed, val_acc)


def snap_and_tune(
    model: ConvNet,
    data: TensorData,
    plans: Sequence[LayerPlan],
    threshold: float | None,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    seed: int = 0,
    val_acc: float | None = None,
) -> tuple[ConvNet, SimplifyReport]:
    """A copy of ``model`` with the kernels ``plans`` choose snapped and frozen, the rest
    fine-tuned ``epochs`` at ``lr``; accuracy measured before, after snapping and after tuning."""
    start = time.monotonic()
    model = model.to(data.x_val.device)
    if val_acc is None:
        _, val_acc = evaluate(model, data.x_val, data.y_val, batch_size)
    net = snap_(copy.deepcopy(model), plans)
    _, projected_acc = evaluate(net, data.x_val, data.y_val, batch_size)
    tuned_acc, tuned_epochs = projected_acc, 0
    if epochs > 0:
        freeze = Freeze(net, plans)
        settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        try:
            history = fit(net, data.x_train, data.y_train, data.x_val, data.y_val, settings,
                          after_step=freeze.restore)
        finally:
            freeze.remove()
        tuned_acc, tuned_epochs = history[-1].val_acc, len(history)
    report = SimplifyReport(threshold=threshold, widths=model.widths, plans=tuple(plans), val_acc=val_acc,
                            projected_acc=projected_acc, tuned_acc=tuned_acc, epochs=tuned_epochs, lr=lr,
                            seconds=time.monotonic() - start)
    return net, report


def metric_suffix(threshold: float | None) -> str:
    """How a sweep's metrics name their threshold: ``tuned_acc_s0.9``, ``tuned_acc_control``."""
    return "control" if threshold is None else f"s{threshold:g}"


def simplify_run(
    store: StoreConfig,
    run_id: str,
    full: FullTrainConfig,
    thresholds: Sequence[float | None],
    epochs: int,
    lr: float | None = None,
    layers: Sequence[int] | None = None,
    device: torch.device | None = None,
    data_dir: Path | None = None,
    on_report: Callable[[SimplifyReport], None] | None = None,
) -> list[SimplifyReport]:
    """Simplify the model logged by full-training run ``run_id`` at each threshold (``None``: the
    fine-tuning control), each from the trained weights, in conv ``layers`` (1-based; default
    all); record a child run of ``run_id``."""
    logged = load_logged_model(store, run_id, data_dir)
    count = len(logged.model.widths)
    if layers is not None and not all(1 <= layer <= count for layer in layers):
        raise ConfigError(f"layers {','.join(map(str, layers))}: the model of run {run_id} has conv layers "
                          f"1..{count}")
    chosen = None if layers is None else [layer - 1 for layer in layers]
    data = logged.data.to(device or torch.device("cpu"))
    rate = fine_tune_rate(full) if lr is None else lr
    widths = format_widths(logged.model.widths)
    tracker = logged.tracker
    child = tracker.start_run(
        f"simplify-{widths}",
        parent_id=run_id,
        params={"widths": widths, "thresholds": ",".join("control" if t is None else f"{t:g}" for t in thresholds),
                "layers": "all" if layers is None else ",".join(map(str, layers)),
                "fine_tune_epochs": epochs, "fine_tune_lr": rate},
        tags={"phase": "simplify", "simplified_run": run_id},
    )
    reports = []
    with tracker.ending(child), tempfile.TemporaryDirectory() as folder:
        pictures = Path(folder)
        model = logged.model.to(data.x_val.device)
        _, val_acc = evaluate(model, data.x_val, data.y_val, full.batch_size)  # once for every threshold
        for threshold in thresholds:
            net, report = simplify_model(model, data, threshold, epochs, rate, chosen, full.batch_size,
                                         int(logged.meta["seed"]), val_acc)
            report = dataclasses.replace(report, run_id=child)
            reports.append(report)
            suffix = metric_suffix(threshold)
            tracker.log_metrics(child, {f"{k}_{suffix}": v for k, v in report.metrics().items()})
            for layer_plan in report.plans:
                if layer_plan.simplified:
                    simplified_kernels(model, net, layer_plan,
                                       pictures / f"kernels_{suffix}_layer{layer_plan.layer + 1}.png")
            if on_report is not None:
                on_report(report)
        snapped = [r for r in reports if r.threshold is not None]
        if len(snapped) > 1:
            simplify_sweep(reports, pictures / "simplify_sweep.png")
        tracker.log_artifacts(child, pictures, "pictures")
        tracker.log_table(child, [row for r in reports for row in r.rows()], "simplify.csv")
        if len(thresholds) == 1 and snapped:
            tracker.log_metrics(child, snapped[0].metrics())
            log_model(tracker, child, net, {**logged.meta, "val_acc": snapped[0].tuned_acc, "simplified_from": run_id,
                                            "threshold": snapped[0].threshold})
    tracker.set_tags(run_id, {"simplify_run_id": child})
    return reports

