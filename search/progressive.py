"""Full training of one width profile, by progressive widening or from scratch.

Mode ``none`` (the default) trains the target widths from scratch for ``total_epochs``
(``epochs``, or ``stages x epochs_per_stage``). The widening modes (``partial``, ``net2net``)
with ``stages = 4`` train the profile at 1/8 of its widths, then widen it to 1/4 (loading the
trained kernels, see ``models.widen``), 1/2 and 1, the epochs split over the stages
(``stage_epochs``); at equal time they gave worse
models than scratch on textures and shapes (``benchmarks/progressive_vs_scratch.py``). Every
stage goes through the same epoch loop as the proxy (``search.train.fit``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from models import ConvNet
from models.widen import widen
from search.config import FullTrainConfig, ModelConfig
from search.data import TensorData
from search.proxy import Candidate, build_model
from search.train import CosineDecay, EpochMetrics, StopTraining, TrainSettings, Transform, fit

SHIFT_PIXELS = 2


def stage_widths(target: Sequence[int], stages: int) -> list[tuple[int, ...]]:
    """Widths of each stage: target / 2^(stages-1), ..., target / 2, target (at least 1 each).

    Example:
        >>> stage_widths((16, 32, 64), 3)
        [(4, 8, 16), (8, 16, 32), (16, 32, 64)]
    """
    schedule = []
    for stage in range(stages):
        divisor = 2 ** (stages - 1 - stage)
        schedule.append(tuple(max(1, round(w / divisor)) for w in target))
    return schedule


def stage_multiplier(stage: int, stages: int) -> float:
    """The stage's width as a fraction of the target: 0.125, 0.25, 0.5, 1.0 for 4 stages."""
    return 1.0 / 2 ** (stages - 1 - stage)


def schedule_multiplier(stage: int, config: FullTrainConfig) -> float:
    """The stage's width as a fraction of the target under ``config`` (1 for ``none``, one stage)."""
    return 1.0 if config.mode == "none" else stage_multiplier(stage, config.stages)


def augmentation(dataset: str, image_size: int) -> Transform:
    """Random shifts of up to 2 pixels, plus mirror flips where they keep the label (cifar10).

    torchvision draws the shift once per batch: cheap, on the device, no per-sample Python. It is
    imported here, not at the top: importing torchvision imports all its models (2.5-3 s of every
    command's start on 2 cores), which only ``--augment`` and torchvision datasets need.
    """
    from torchvision.transforms import v2

    steps: list[torch.nn.Module] = [v2.RandomCrop(image_size, padding=SHIFT_PIXELS, padding_mode="reflect")]
    if dataset == "cifar10":
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


@dataclass(frozen=True)
class StageResult:
    stage: int  # 0-based
    multiplier: float  # width as a fraction of the target
    widths: tuple[int, ...]
    history: tuple[EpochMetrics, ...]
    trained_params: int
    seconds: float

    @property
    def val_acc(self) -> float:
        return self.history[-1].val_acc if self.history else float("nan")

    @property
    def epoch_s(self) -> float:
        """Mean seconds of one training epoch of this stage (nan before any epoch)."""
        return sum(m.epoch_time_s for m in self.history) / len(self.history) if self.history else float("nan")


@dataclass(frozen=True)
class FullResult:
    widths: tuple[int, ...]  # the target
    mode: str
    stages: tuple[StageResult, ...]
    seconds: float
    stopped: str | None = None  # why training ended early (the last stage may be short)
    # Where the returned model was measured (0-based stage, 1-based epoch): the best validation
    # accuracy of the run, so a run stopped mid-stage never reports a half-warmed network.
    kept_stage: int = -1
    kept_epoch: int = 0
    kept_val_acc: float = float("nan")
    planned_epochs: tuple[int, ...] = ()  # per stage, as scheduled

    @property
    def whole_seconds(self) -> float | None:
        """The whole training's seconds: as measured when it completed; when it stopped early, each
        stage's mean epoch (training and evaluation) times the epochs planned for it, if every
        stage trained at least one; else None.

        Example:
            >>> stage = StageResult(0, 1.0, (8,), (EpochMetrics(1, 1.0, 1.0, 0.5, 1.5, 0.5, 10.0),) * 2, 10, 4.0)
            >>> FullResult((8,), "none", (stage,), 4.1, "budget", planned_epochs=(6,)).whole_seconds
            12.0
        """
        if self.complete:
            return self.seconds
        if len(self.stages) != len(self.planned_epochs) or not all(stage.history for stage in self.stages):
            return None
        return sum(stage.seconds / len(stage.history) * epochs
                   for stage, epochs in zip(self.stages, self.planned_epochs, strict=True))

    @property
    def val_acc(self) -> float:
        """The validation accuracy of the model this run kept (and returned)."""
        return self.kept_val_acc

    @property
    def last_val_acc(self) -> float:
        return self.stages[-1].val_acc

    @property
    def kept_widths(self) -> tuple[int, ...]:
        return self.stages[self.kept_stage].widths

    @property
    def kept_trained_params(self) -> int:
        return self.stages[self.kept_stage].trained_params

    @property
    def complete(self) -> bool:
        return self.stopped is None


def schedule(target: Sequence[int], config: FullTrainConfig) -> list[tuple[tuple[int, ...], int]]:
    """(widths, epochs) of each stage: ``none`` is one stage of all the epochs (``total_epochs``).

    Example:
        >>> schedule((8, 16), FullTrainConfig(mode="partial", stages=2, epochs_per_stage=3))
        [((4, 8), 3), ((8, 16), 3)]
        >>> schedule((8, 16), FullTrainConfig(mode="none", stages=2, epochs_per_stage=3))
        [((8, 16), 6)]
    """
    target = tuple(int(w) for w in target)
    if config.mode == "none":
        return [(target, config.total_epochs)]
    return list(zip(stage_widths(target, config.stages), config.stage_epochs(), strict=True))


def train_full(
    widths: Sequence[int],
    data: TensorData,
    model_config: ModelConfig,
    config: FullTrainConfig,
    seed: int,
    on_stage: Callable[[int, ConvNet], None] | None = None,
    on_epoch: Callable[[int, EpochMetrics], None] | None = None,
) -> tuple[FullResult, ConvNet]:
    """Train ``widths`` fully; return the per-stage results and the best network it measured.

    One learning-rate schedule spans all stages (``config.decay``: cosine to zero over the
    whole run's epochs), and every stage starts with its own short warm-up.
    ``on_stage(stage, model)`` is called before each stage trains, ``on_epoch(stage, m)``
    after each epoch. ``on_epoch`` may raise ``StopTraining`` to end early: the result then
    holds the epochs done so far (``stopped`` says why). The network returned is the one of
    the epoch with the best validation accuracy (ties: the later, wider one), so an early stop
    returns what was reached, never the state of a stage mid-warm-up.
    """
    start = time.perf_counter()
    augment = augmentation(data.name, data.image_size) if config.augment else None
    plan = schedule(widths, config)
    total_epochs = sum(epochs for _, epochs in plan)
    model: ConvNet | None = None
    results: list[StageResult] = []
    stopped = None
    best = _Best()
    epochs_before = 0
    for stage, (stage_target, epochs) in enumerate(plan):
        stage_start = time.perf_counter()
        if model is None:
            model = build_model(Candidate(stage_target, 0), data, model_config, seed).zero_classifier_()
        else:
            mode = "net2net" if config.mode == "net2net" else "partial"
            model = widen(model, stage_target, mode, seed=seed + stage, noise=config.net2net_noise)
        if on_stage is not None:
            on_stage(stage, model)
        history: list[EpochMetrics] = []

        def record(metrics: EpochMetrics, stage: int = stage, history: list[EpochMetrics] = history,
                   model: ConvNet = model) -> None:
            history.append(metrics)
            best.offer(metrics, stage, model)
            if on_epoch is not None:
                on_epoch(stage, metrics)

        decay = CosineDecay(total_epochs, epochs_before) if config.decay == "cosine" else None
        try:
            fit(
                model,
                data.x_train,
                data.y_train,
                data.x_val,
                data.y_val,
                TrainSettings(epochs, config.batch_size, config.lr, config.weight_decay, seed + stage,
                              warmup_epochs=config.warmup_epochs, amp=config.amp, decay=decay),
                augment=augment,
                after_step=model.apply_constraints_ if model.has_constraints else None,
                on_epoch=record,
            )
        except StopTraining as stop:
            stopped = str(stop) or type(stop).__name__
        epochs_before += epochs
        results.append(
            StageResult(stage, schedule_multiplier(stage, config), stage_target, tuple(history), model.trained_params(),
                        time.perf_counter() - stage_start)
        )
        if stopped is not None:
            break
    assert model is not None
    if best.state is not None:
        model = best.restore()
    return FullResult(tuple(int(w) for w in widths), config.mode, tuple(results), time.perf_counter() - start,
                      stopped, best.stage, best.epoch, best.val_acc, tuple(epochs for _, epochs in plan)), model


# Per epoch, evaluating the validation split and the loop's own work on top of the training
# steps. With 0.3 the real time was 0.64-0.95 of the estimate on digits and textures (2-core
# CPU, widths 4-64); with 0.2 it is about 0.7-1.0: slightly pessimistic, as a plan should be.
EPOCH_OVERHEAD = 0.2


def estimate_full_s(widths: Sequence[int], data: TensorData, model_config: ModelConfig, config: FullTrainConfig,
                    steps: int = 2) -> float:
    """Seconds a full training of ``widths`` is expected to take, from ``steps`` timed training
    steps of one batch at each stage's widths (after one untimed step), scaled to the stage's
    epochs. A fraction of a second per candidate; it decides how many candidates fit a budget.
    """
    batch = min(config.batch_size, len(data.x_train))
    x, y = data.x_train[:batch], data.y_train[:batch]
    steps_per_epoch = -(-len(data.x_train) // config.batch_size)
    total = 0.0
    for stage_target, epochs in schedule(widths, config):
        model = build_model(Candidate(stage_target, 0), data, model_config, seed=0)
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)

        def step(model: ConvNet = model, optimiser: torch.optim.Optimizer = optimiser) -> None:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

        step()
        _synchronise(data.x_train.device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _synchronise(data.x_train.device)
        total += (time.perf_counter() - start) / steps * steps_per_epoch * epochs * (1 + EPOCH_OVERHEAD)
    return total


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Best:
    """The best validation accuracy seen so far and a copy of the weights that reached it."""

    def __init__(self) -> None:
        self.val_acc = float("nan")
        self.stage, self.epoch = -1, 0
        self.spec: dict[str, Any] | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def offer(self, metrics: EpochMetrics, stage: int, model: ConvNet) -> None:
        if self.state is not None and metrics.val_acc < self.val_acc:
            return
        self.val_acc, self.stage, self.epoch = metrics.val_acc, stage, metrics.epoch
        self.spec = model.spec()
        self.state = {name: value.detach().clone() for name, value in model.state_dict().items()}

    def restore(self) -> ConvNet:
        assert self.spec is not None and self.state is not None
        device = next(iter(self.state.values())).device
        model = ConvNet(**self.spec).to(device)
        model.load_state_dict(self.state)
        return model
