"""What ``search run`` shows while it works and when it ends (rich); no search logic here."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from models import format_widths
from search.analysis import Analysis
from search.config import COMBINED
from search.events import (
    CandidateEnded,
    CandidateStarted,
    EpochDone,
    Event,
    SearchStarted,
    StageStarted,
    TrialEnded,
    TrialStarted,
)
from search.pareto import pareto_front
from search.results import SearchResult, SimplifyReport, SlimReport, TrialSummary
from search.validate import SweepRow, ValidationResult, chance_rho, full_timing, seeds_needed, target_is_noise

console = Console(highlight=False)
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 140  # logs and pipes: wide enough that no table column is cut
TOP_ROWS = 5


def score_text(score: float | None) -> str:
    """Accuracies with 4 decimals; other scorers' numbers (synflow is ~1e30) in 4 digits."""
    if score is None:
        return ""
    return f"{score:.4f}" if abs(score) <= 1 else f"{score:.4g}"


class SearchProgress:
    """A live line (trial, epoch, best so far, budget bar) and one printed line per trial."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TimeElapsedColumn(),
            TextColumn("of {task.fields[budget]}"),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("starting", total=None, budget="?", visible=False)
        self.started = time.monotonic()
        self.epochs = 0
        self.best: TrialSummary | None = None
        self.trial = ""
        self.candidate = ""

    def __enter__(self) -> SearchProgress:
        return self  # the live line starts with the search, after its settings checked out

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def handle(self, event: Event) -> None:
        if isinstance(event, SearchStarted):
            self.epochs = event.epochs
            self.started = time.monotonic()
            resumed = f", resuming after {event.resumed_trials} trials" if event.resumed_trials else ""
            console.print(
                f"Study [bold]{event.study_name}[/] on {event.dataset} ({event.device}), "
                f"budget {event.budget_s:.0f} s{resumed}\nscoring: {event.scoring}"
            )
            self.progress.update(self.task, total=event.budget_s, budget=f"{event.budget_s:.0f}s", visible=True)
            self.progress.start()
        elif isinstance(event, TrialStarted):
            self.trial = f"trial {event.number} {event.candidate.label} k={event.candidate.frozen_layers}"
            self._update(f"{self.trial} epoch 0/{self.epochs}")
        elif isinstance(event, CandidateStarted):
            if event.rank == 1:
                fits = f" (the time left fits {event.of} of the top {event.wanted})" if event.wanted > event.of else ""
                console.print(f"Full training of the best {event.of}{fits} ({training_how(event.mode)}):")
            self.candidate = f"full {event.rank}/{event.of} {format_widths(event.widths)}"
            self._update(self.candidate)
        elif isinstance(event, StageStarted):
            self.epochs = event.epochs
            self.trial = f"{self.candidate} stage {event.stage + 1}/{event.stages}"
            self._update(self.trial)
        elif isinstance(event, CandidateEnded):
            f = event.summary
            outcome = f"val_acc {f.val_acc:.4f}" if f.val_acc is not None else "failed"
            learned = f"  learned {f.learned_label} ({f.analysis_images} images)" if f.learned_widths else ""
            note = f"  ({f.note})" if f.note else ""
            console.print(f"  full {f.rank:>2}  {f.label:<24} {outcome:<16}{learned}  {f.seconds:6.1f} s{note}")
        elif isinstance(event, EpochDone):
            m = event.metrics
            self._update(f"{self.trial} epoch {m.epoch}/{self.epochs} val_acc {m.val_acc:.3f}")
        elif isinstance(event, TrialEnded):
            self.best = event.best
            t = event.summary
            outcome = f"score {score_text(t.score)}" if t.score is not None else t.state.lower()
            if t.rejected:
                outcome += f": {t.rejected}"
            if t.same_as is not None:
                outcome += f" (as trial {t.same_as}: not trained again)"
            if event.error:
                outcome += f" ({event.error})"
            console.print(
                f"  trial {t.number:>3}  {t.label:<24} k={t.frozen_layers}  {outcome:<16} "
                f"{t.seconds or 0:6.1f} s"
            )
            self._update(self.trial)

    def _update(self, text: str) -> None:
        best = f" | best {score_text(self.best.score)} ({self.best.label})" if self.best and self.best.score else ""
        self.progress.update(self.task, description=text + best, completed=time.monotonic() - self.started)


class TrainProgress:
    """One line per stage and per epoch of ``search train``."""

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def handle(self, event: Event) -> None:
        if isinstance(event, StageStarted):
            console.print(
                f"stage {event.stage + 1}/{event.stages}  {format_widths(event.widths)}  "
                f"{event.trained_params:,} trained params, {event.epochs} epochs"
            )
        elif isinstance(event, EpochDone):
            m = event.metrics
            console.print(
                f"  epoch {m.epoch}  train_loss {m.train_loss:.4f}  val_acc {m.val_acc:.4f}  "
                f"{m.epoch_time_s:.2f} s  {m.images_per_s:,.0f} img/s"
            )


def penalised(result: SearchResult) -> bool:
    """Whether the search's scores took a width penalty off the proxy's accuracy."""
    return any(t.width_penalty for t in result.trials)


SCORE_CAPTION = ("score: the proxy's accuracy (acc) less width_weight per halving of a trained layer's width below "
                 "the widest (frozen_width_weight of a frozen one's, last_frozen_width_weight of the last "
                 "frozen one's)")


def score_meaning(scorer: str) -> str:
    """What a search's score is, in words, when no width penalty was taken off it."""
    return "score: the proxy's validation accuracy" if scorer == "proxy" else f"score: the {scorer} score"


def results_table(result: SearchResult, rows: int = TOP_ROWS) -> Table:
    with_accuracy = penalised(result)
    caption = "k: frozen random layers, params: trained, s: seconds"
    table = Table(title=f"Top candidates of {result.study_name}",
                  caption=f"{caption}; {SCORE_CAPTION if with_accuracy else score_meaning(result.scorer)}")
    columns = ("rank", "trial", "widths", "k", "score", *(("acc",) if with_accuracy else ()), "params", "s")
    for column in columns:
        table.add_column(column, justify="left" if column == "widths" else "right", no_wrap=True)
    for rank, trial in enumerate(result.completed()[:rows], start=1):
        table.add_row(
            str(rank),
            str(trial.number),
            trial.label,
            str(trial.frozen_layers),
            score_text(trial.score),
            *((score_text(trial.accuracy),) if with_accuracy else ()),
            f"{trial.trained_params:,}" if trial.trained_params is not None else "",
            f"{trial.seconds:.1f}" if trial.seconds is not None else "",
        )
    return table


def pareto_table(result: SearchResult) -> Table:
    """The front of a pareto search, cheapest first, with every cost and how far each was trained."""
    with_accuracy = penalised(result)
    caption = ("params: all layers', MACs: multiply-adds per image, ms: latency of one batch, "
               "full: validation accuracy after full training")
    table = Table(title=f"Pareto front of {result.study_name}: proxy score against {result.cost}",
                  caption=caption + (f"; {SCORE_CAPTION}" if with_accuracy else ""))
    for column in ("trial", "widths", "score", *(("acc",) if with_accuracy else ()), "params", "MACs", "ms", "full"):
        table.add_column(column, justify="left" if column == "widths" else "right", no_wrap=True)
    trained = {f.trial: f for f in result.full}
    for member in pareto_front(result.trials, result.cost):
        done = trained.get(member.number)
        table.add_row(
            str(member.number),
            member.label,
            score_text(member.score),
            *((score_text(member.accuracy),) if with_accuracy else ()),
            f"{member.total_params:,}" if member.total_params is not None else "",
            f"{member.macs:,}" if member.macs is not None else "",
            f"{member.latency_ms:.3g}" if member.latency_ms is not None else "",
            f"{done.val_acc:.4f}" if done is not None and done.val_acc is not None else "",
        )
    return table


def slim_table(report: SlimReport) -> Table:
    """Searched against slimmed widths: the costs and the accuracy at each step of slimming."""
    table = Table(title=f"Slimmed: lazy kernels removed, {report.epochs} epochs of fine-tuning at lr {report.lr:.3g}",
                  caption="val_acc of the slimmed network right after the removal, then after fine-tuning")
    for column in ("network", "widths", "params", "MACs", "ms", "val_acc"):
        table.add_column(column, justify="left" if column in ("network", "widths") else "right", no_wrap=True)
    table.add_row("trained", format_widths(report.widths), f"{report.params:,}", f"{report.macs:,}",
                  f"{report.latency_ms:.3g}", f"{report.val_acc:.4f}")
    table.add_row("slimmed", format_widths(report.slim_widths), f"{report.slim_params:,}", f"{report.slim_macs:,}",
                  f"{report.slim_latency_ms:.3g}", f"{report.removed_acc:.4f} -> {report.tuned_acc:.4f}")
    return table


def simplify_line(report: SimplifyReport) -> str:
    """One line per threshold as a sweep goes."""
    what = "control (nothing snapped)" if report.threshold is None else f"S={report.threshold:g}"
    return (f"{what}: {report.simplified} of {sum(report.widths)} kernels snapped, "
            f"{100 * report.removed_share:.2f} % of kernel weights "
            f"removed; val_acc {report.val_acc:.4f} -> {report.projected_acc:.4f} -> {report.tuned_acc:.4f} "
            f"({report.seconds:.1f} s)")


def simplify_table(reports: Sequence[SimplifyReport]) -> Table:
    """One threshold: a row per conv layer and the total. A sweep: a row per threshold."""
    first = reports[0]
    tuned = f"{first.epochs} epochs of fine-tuning at lr {first.lr:.3g}" if first.epochs else "no fine-tuning"
    if len(reports) == 1:
        table = Table(title=f"Simplified {format_widths(first.widths)} at S={first.threshold:g}: {tuned}",
                      caption=f"val_acc: trained {first.val_acc:.4f} -> snapped {first.projected_acc:.4f} -> "
                      f"fine-tuned {first.tuned_acc:.4f}; free: kernel weights (biases not counted); snapped "
                      "kernels are frozen during fine-tuning")
        for column in ("layer", "kernels", "snapped", "by symmetry", "free before", "free after", "removed"):
            table.add_column(column, justify="left" if column == "by symmetry" else "right", no_wrap=True)
        for p in first.plans:
            by = ", ".join(f"{name} {n}" for name, n in p.counts().items() if n)
            table.add_row(str(p.layer + 1), str(len(p.chosen)), str(p.simplified), by, f"{p.free_before:,}",
                          f"{p.free_after:,}", f"{100 * (1 - p.free_after / p.free_before):.1f} %")
        table.add_row("all", str(sum(first.widths)), str(first.simplified), "", f"{first.free_before:,}",
                      f"{first.free_after:,}", f"{100 * first.removed_share:.2f} %")
        return table
    table = Table(title=f"Simplification sweep of {format_widths(first.widths)}: {tuned}, each from the trained "
                  "weights", caption="val_acc: trained -> right after snapping -> after fine-tuning; control: "
                  "nothing snapped, fine-tuned the same")
    for column in ("S", "snapped", "free after", "removed", "trained", "snapped", "fine-tuned"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in reports:
        table.add_row("control" if r.threshold is None else f"{r.threshold:g}", str(r.simplified),
                      f"{r.free_after:,}", f"{100 * r.removed_share:.2f} %", f"{r.val_acc:.4f}",
                      f"{r.projected_acc:.4f}", f"{r.tuned_acc:.4f}")
    return table


def training_how(mode: str) -> str:
    """How full training runs under ``mode`` (FullTrainConfig.mode), in words."""
    return "from scratch" if mode == "none" else f"progressive widening, {mode}"


def full_table(result: SearchResult, mode: str) -> Table:
    """The second phase, trained as ``mode`` says: proxy score beside full accuracy, the winner first."""
    table = Table(title=f"Full training ({training_how(mode)}); * winner", caption="proxy: proxy score, "
                  "full: validation accuracy after full training, images: validation images the learned widths "
                  "were measured on, params: trained, s: seconds")
    for column in ("rank", "widths", "proxy", "full", "learned widths", "images", "params", "s", "state"):
        table.add_column(column, justify="left" if column in ("widths", "learned widths", "state") else "right",
                         no_wrap=True)
    winner = result.winner
    for f in sorted(result.full, key=lambda f: f.rank):
        mark = " *" if winner is not None and f.run_id == winner.run_id else ""
        table.add_row(
            f"{f.rank}{mark}",
            f"{f.label}{f.kept_note}",
            score_text(f.proxy_score),
            f"{f.val_acc:.4f}" if f.val_acc is not None else "",
            f.learned_label or "",
            str(f.analysis_images) if f.analysis_images is not None else "",
            f"{f.trained_params:,}" if f.trained_params is not None else "",
            f"{f.seconds:.1f}",
            f.state.lower(),
        )
    return table


def layers_table(analysis: Analysis) -> Table:
    """Per conv layer: searched and learned width and the kernel statistics' means."""
    table = Table(title=f"Kernels (ablations on {analysis.images} validation images)",
                  caption="means over a layer's kernels; max drop: largest accuracy drop when one kernel is zeroed "
                          "(with the earlier layers' lazy kernels zeroed); every lazy kernel "
                          f"zeroed together: accuracy {-analysis.lazy_drop:+.4f}")
    for column in ("layer", "width", "learned", "lazy", "norm", "entropy", "max drop", "mirror lr", "mirror ud"):
        table.add_column(column, justify="right", no_wrap=True)
    for layer in analysis.summary()["layers"]:
        table.add_row(
            str(layer["layer"]), str(layer["width"]), str(layer["learned_width"]), str(layer["lazy"]),
            f"{layer['mean_norm']:.3f}", f"{layer['mean_entropy']:.2f}", f"{layer['max_importance']:.3f}",
            f"{layer['mean_mirror_lr']:.2f}", f"{layer['mean_mirror_ud']:.2f}",
        )
    return table


def _interval(value: float, low_high: tuple[float, float]) -> str:
    return f"{value:.3f} [{low_high[0]:.2f}, {low_high[1]:.2f}]"


def validation_table(result: ValidationResult) -> Table:
    """Per scorer: rank correlations with full accuracy, top-1 and top-k regret, cost."""
    sample = f"{result.sample} " if result.sample else ""
    table = Table(title=f"How well each score ranks {len(result.candidates)} candidates {sample}({result.recipe}; "
                  f"proxy {result.proxy})",
                  caption="[95 % bootstrap interval]; tau: Kendall's (its interval is in scorers.json); /ceiling: rho "
                  "over what one more full training reaches against the target; beyond width: rho with "
                  "the overall width (sum of log widths) held fixed; regret: best full accuracy minus that of the "
                  "scorer's top pick (regret@k: the best of its top k, as many as a search trains in full); cost: "
                  "seconds per candidate, and as a share of one full training" + "".join(
                      f"; {r.scorer}: {COMBINED[r.scorer].meaning}"
                      for r in result.reports if r.scorer in COMBINED))
    top_k = max((r.top_k for r in result.reports), default=1)
    for column in ("scorer", "Spearman rho", "/ceiling", "beyond width", "tau", "regret", f"regret@{top_k}",
                   "s/candidate", "cost/full"):
        table.add_column(column, justify="left" if column == "scorer" else "right", no_wrap=True)
    for r in sorted(result.reports, key=lambda r: -r.spearman if r.spearman == r.spearman else 2.0):
        table.add_row(r.scorer, _interval(r.spearman, r.spearman_ci), _number(r.of_ceiling), _number(r.beyond_width),
                      f"{r.kendall:.3f}", f"{r.regret:.4f}", f"{r.regret_top_k:.4f}", f"{r.cost_s:.3f}",
                      f"{r.cost_ratio:.3f}")
    return table


def ceiling_line(result: ValidationResult) -> str:
    accuracies = {round(a, 6) for c in result.candidates for a in c.replicas}
    if len(accuracies) == 1:  # no rank correlation exists: say why rather than print nan
        return (f"every full training ended at val_acc {accuracies.pop():.4f}: the data saturates and nothing can "
                "be ranked on it; use harder data (fewer images, another dataset)")
    if result.ceiling != result.ceiling:
        return "seed ceiling: needs --full-seeds 2 or more"
    line = f"seed ceiling (rho between two full-training seeds) {result.ceiling:.3f}"
    needed = seeds_needed(result.ceiling)
    if needed is None:
        return line + "; the seeds do not agree at all: train longer before trusting any ranking"
    line += (f"; the target, the mean of {result.full_seeds} seeds, repeats at about "
             f"{result.target_reliability:.3f} (Spearman-Brown), and one more full training would rank like it at "
             f"about {result.replica_rho:.3f} (the mark of /ceiling)")
    if target_is_noise(result.ceiling, result.full_seeds):
        line += ("; the target is mostly seed noise, so no scorer's rho on these profiles says much (rho/ceiling "
                 "not shown): full training barely tells them apart")
    if needed > result.full_seeds:
        return line + f"; --full-seeds {needed} would reach 0.9"
    return line


def proxy_seeds_line(result: ValidationResult) -> str | None:
    """Under validate's table with --proxy-seeds N: how far the proxy's own seed moves its rho."""
    seeds = result.proxy_seeds
    if seeds is None:
        return None
    rhos = [rho for rho in seeds.rhos if math.isfinite(rho)]
    spread = f", spread {max(rhos) - min(rhos):.3f}" if len(rhos) > 1 else ""
    score = (f"; as the search's score (less the width penalty: proxy_score) rho "
             f"{' / '.join(_rho(r) for r in seeds.score_rhos)}, their mean {_rho(seeds.score_mean_rho)}, its top-1 "
             f"regret {' / '.join(f'{r:.4f}' for r in seeds.score_regrets)}"
             if seeds.score_rhos else "")
    return (f"the proxy with {len(seeds.rhos)} seeds (other random frozen layers and tops; the table's row is the "
            f"first, the score a search uses): rho {' / '.join(_rho(r) for r in seeds.rhos)} against the target"
            f"{spread}; two of its seeds agree at {_rho(seeds.agreement)}, and their mean ranks at "
            f"{_rho(seeds.mean_rho)} ({len(seeds.rhos)}x the cost){score}. Proxy settings whose rhos differ by less "
            "than that spread are not told apart by one run each")


def width_bias_line(result: ValidationResult) -> str | None:
    """Under validate's table: per layer, how the proxy's rank errors follow that layer's width
    (search.validate.width_bias). None without the proxy among the scorers."""
    report = next((r for r in result.reports if r.scorer == "proxy"), None)
    if report is None or not any(math.isfinite(b) for b in report.width_bias):
        return None
    layers = ", ".join(f"L{i + 1} {b:+.2f}" if math.isfinite(b) else f"L{i + 1} -"
                       for i, b in enumerate(report.width_bias))
    k = result.frozen_layers
    frozen = {0: "", 1: "; L1 is frozen in the proxy"}.get(k, f"; L1-L{k} are frozen in the proxy")
    return (f"where the proxy departs from full training, by layer (rho of its rank error with the layer's width; +: "
            f"it ranks profiles with that layer wide higher than full training does): {layers}; beyond "
            f"+-{chance_rho(len(result.candidates)):.2f} unlikely by chance with {len(result.candidates)} "
            f"candidates{frozen}")


def timing_line(result: ValidationResult) -> str | None:
    """Under validate's table when cost/full divides by full trainings timed unlike the scorers:
    on another device (from the cache), or several at a time (``--workers``), each then slower
    than alone. None when every recorded one was timed alone where the scorers ran."""
    devices, at_once = full_timing(result.candidates)
    elsewhere = not devices <= {result.device}
    if not elsewhere and at_once == 1:
        return None
    parts = []
    if elsewhere:
        parts.append(f"timed on {' and '.join(sorted(devices))} (from the cache)")
    if at_once > 1:
        parts.append(f"timed up to {at_once} at a time (--workers), each slower than alone, which understates "
                     "the scorers' share")
    return (f"cost/full divides the scorers' seconds on {result.device} by full trainings {'; '.join(parts)}: "
            f"train one candidate again alone on {result.device} to compare like with like")


def _rho(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "nan (a constant score)"


def _number(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "-"


def frozen_sweep_table(rows: list[SweepRow], widths: str, epochs: int) -> Table:
    table = Table(title=f"Frozen random layers k for {widths} ({epochs} proxy epochs)",
                  caption="s/epoch: the training pass, over cached frozen features or recomputing them per batch")
    for column in ("k", "trained params", "frozen params", "cache s", "s/epoch cached", "s/epoch not cached",
                   "val_acc"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(str(r.frozen_layers), f"{r.trained_params:,}", f"{r.frozen_params:,}", f"{r.cache_s:.2f}",
                      f"{r.epoch_s_cached:.3f}", f"{r.epoch_s_uncached:.3f}", f"{r.val_acc:.4f}")
    return table
