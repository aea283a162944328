"""Every setting of a search, as frozen dataclasses; TOML loading; validation.

Settings come from three layers, later ones winning: the defaults below, a TOML file
(``--config``, one table per dataclass: ``[space]``, ``[model]``, ``[proxy]``, ``[full]``, ``[data]``,
``[search]``, ``[fidelity]``, ``[ray]``, ``[store]``), then command-line flags. ``Config.validate`` checks the
result once, at the edge, and raises ``ConfigError`` naming the bad value.

Example:
    >>> cfg = Config(search=SearchConfig(budget_s=parse_duration("10m")))
    >>> cfg.validate().search.budget_s
    600.0
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

from search.errors import ConfigError

DATASETS = ("digits", "mnist-5k", "textures", "shapes", "synthetic", "cifar10", "mnist", "fashion-mnist", "kmnist")
TORCHVISION_DATASETS = ("cifar10", "mnist", "fashion-mnist", "kmnist")
PRUNERS = ("hyperband", "median", "none")
SAMPLERS = ("tpe", "random")
OBJECTIVES = ("accuracy", "pareto")
COSTS = ("params", "macs", "latency")  # search/cost.py
DEVICES = ("auto", "cpu", "cuda")
WIDEN_CHOICES = ("partial", "net2net", "none")
DECAYS = ("cosine", "constant")
SCORERS = ("proxy", "params", "synflow", "naswot", "grad_norm")  # search/scorers.py
# The proxy's score: its accuracy less WIDTH_WEIGHT per halving of each trained layer's width
# below the space's widest, and FROZEN_WIDTH_WEIGHT per halving of each frozen layer's. Chosen on
# twelve development ground truths (mean rho flat at 0.85-0.86 along 0.01-0.02 between the two),
# then checked on six at 28x28 (benchmarks/FIDELITY.md, "Frozen width counts less").
WIDTH_WEIGHT = 0.020
FROZEN_WIDTH_WEIGHT = 0.008
# The last frozen layer's weight, as the others'. 0 (the proxy's accuracy already rates a wide last
# frozen layer too high) passed its pre-registered test on four fresh samples, then ranked real
# digits (mnist-5k) 0.03 worse and eight fresh samples only 0.01 better on average: not adopted
# (benchmarks/FIDELITY.md, "Ground truths kept"; benchmarks/ground_truths/PREREGISTERED.md).
LAST_FROZEN_WIDTH_WEIGHT = FROZEN_WIDTH_WEIGHT
class Combined(NamedTuple):
    """A row of validate's that combines scores over its sample (search/validate.py, ``with_combined``)."""

    needs: tuple[str, ...]  # reported whenever these scorers ran
    meaning: str
    free: bool = False  # costs nothing (else the cost of its ``needs`` together)
    penalised: bool = False  # a score with the width penalty: not reported when both width weights are 0


# validate's combined rows: rank_mean (not a search score), proxy_score (the score a search gives
# the proxy) and width_term (its width penalty alone, which costs nothing).
COMBINED = {
    "rank_mean": Combined(("proxy", "params"), "the mean of the proxy and params ranks among these candidates "
                          "(not a search score)"),
    "proxy_score": Combined(("proxy",), "the search's score: the proxy's accuracy less width_weight per halving "
                            "of each trained layer's width below the space's widest (frozen_width_weight for a "
                            "frozen one, last_frozen_width_weight for the last frozen one)", penalised=True),
    "width_term": Combined(("proxy",), "the score's width term alone (no training, no cost): what the widths "
                           "explain of proxy_score", free=True, penalised=True),
}
SAMPLES = ("spread", "equal-width")  # validate's profiles: search/validate.py
BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class SpaceConfig:
    """What the search may choose: one width per conv layer, and how many are frozen."""

    layers: int = 5
    # The widths every layer may take. Doubling steps: a width's effect on accuracy is about
    # its logarithm, and the narrow end is where profiles differ most (see the README).
    width_choices: tuple[int, ...] | None = (4, 8, 16, 32, 64)
    # A range instead (used when width_choices is None): width_min, width_min + width_step, ...
    width_min: int = 8
    width_max: int = 256
    width_step: int = 8
    # Explicit choices per layer, overriding both (one tuple per layer).
    layer_choices: tuple[tuple[int, ...], ...] | None = None
    # Choices for the number of frozen random lower layers; one value fixes it.
    # k=2, chosen with search validate. k=1 ranks better on average over the kept samples, at twice the
    # proxy's cost and worse on three of five real-digits samples; with one top, at k=2's cost, it does not
    # (benchmarks/FIDELITY.md, "Five more samples", "One frozen layer on the four", "Five fresh samples
    # for one frozen layer"; benchmarks/ground_truths/PREREGISTERED.md).
    frozen_layers: tuple[int, ...] = (2,)

    def choices(self, layer: int) -> tuple[int, ...]:
        if self.layer_choices is not None:
            return self.layer_choices[layer]
        if self.width_choices is not None:
            return self.width_choices
        return tuple(range(self.width_min, self.width_max + 1, self.width_step))

    @property
    def categorical(self) -> bool:
        """Whether the widths are a list of choices (else an ordinal range)."""
        return self.layer_choices is not None or self.width_choices is not None


@dataclass(frozen=True)
class ModelConfig:
    """The parts of the network that the search does not choose."""

    hidden: tuple[int, ...] = (256, 256)
    pool_after: tuple[int, ...] | None = None  # None: every second block and the last
    max_kernel_norm: float | None = None
    max_column_norm: float | None = None
    norm_fraction: float = 0.5


@dataclass(frozen=True)
class ProxyConfig:
    """The cheap score: train the top over cached frozen features for a few epochs."""

    # 4 epochs x 2 replicas, chosen with search validate on digits and textures and with 3-minute
    # searches (README): one top's score is noisy (two tops on the same features agree at rho
    # 0.65-0.8), the mean of two less so. 2 epochs x 3 ranked the sample better still, but
    # its searches' winners spread lower (down to 0.950 on digits): 2 epochs measure how
    # fast a top learns more than how far it gets. Re-checked with the width-penalised score on
    # eight samples (benchmarks/FIDELITY.md, "One top or two"): two tops ranked under 0.01 better than one on
    # average, better on seven of eight with the search's seed, at 1.3-1.9x the cost.
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    # Cached features of one trial are kept in memory up to this size, otherwise recomputed per
    # batch; features kept for later trials with the same lower widths stay within it too.
    cache_mb: float = 2048.0
    amp: bool = False  # mixed precision (bfloat16 autocast) on CUDA; no effect on the CPU
    # The top trains on the first train_images training images (None, "all" in TOML: all of
    # them; every loader shuffles its training split); every candidate is scored on the same
    # ones and on the whole validation split. Chosen with validate at 8,000 training images
    # (see the README): 2,000 cost a quarter and ranked at 0.86 against 0.90 with all of them.
    train_images: int | None = 2000
    standardise: bool = True  # per-channel standardisation of the frozen features
    decay: str = "cosine"  # cosine (to zero over the proxy's epochs) | constant
    # Linear warm-up: Adam's first steps move every weight by ~lr, which killed every ReLU of
    # a narrow trained layer (a width-2 or width-4 layer ended at chance) before it learned.
    warmup_epochs: float = 0.5
    # Copies of the top with their own random initial weights, trained side by side over the
    # same frozen features; the score is their mean validation accuracy.
    replicas: int = 2
    # Each copy over its own random frozen layers (seed + r) instead: the same training cost,
    # 1.27x the seconds (a feature pass per copy), replicas x the feature memory. With the score's
    # width term it ranks about 0.01 better on average, top picks mixed (benchmarks/FIDELITY.md, "Frozen width
    # counts less"): off by default.
    frozen_per_replica: bool = False
    # A trained conv layer that reads more than lr_fan_in channels learns at
    # lr x sqrt(lr_fan_in / channels) (None, "none" in TOML: every layer at lr). With one rate a
    # wide trained layer moves further per step than a narrow one. 16 ranked better on the
    # 6-layer grids at 8,000 images and level on average over 12 samples, worse among one width
    # on 3 of 4 (benchmarks/FIDELITY.md, "Scoring by loss, and the proxy's learning rate by depth and by layer
    # width"): off by default.
    lr_fan_in: int | None = None
    # The score that ranks and prunes trials: the tops' validation accuracy less width_weight per
    # halving of each trained layer's width below the widest the space allows it,
    # frozen_width_weight per halving of each frozen layer's below the last, and
    # last_frozen_width_weight of the last frozen layer's (the widest candidate scores its
    # accuracy); all 0: the accuracy alone. The proxy under-rates width that pays off only with
    # full training's longer schedule and more images, and a wide random frozen layer is worth more
    # to it than a wide layer is to full training, the last frozen layer's most (benchmarks/FIDELITY.md, "The
    # proxy's score", "Frozen width counts less", "Ground truths kept").
    width_weight: float = WIDTH_WEIGHT
    frozen_width_weight: float = FROZEN_WIDTH_WEIGHT  # each frozen layer's but the last
    last_frozen_width_weight: float = LAST_FROZEN_WIDTH_WEIGHT  # the last frozen layer's (the first's when k=1)

    @property
    def penalised(self) -> bool:
        """Whether the score takes a width penalty off the accuracy (some weight is above 0)."""
        return self.width_weight > 0 or self.frozen_width_weight > 0 or self.last_frozen_width_weight > 0


@dataclass(frozen=True)
class FullTrainConfig:
    """Full training of one profile, optionally by progressive widening N -> 2N -> ... -> target."""

    # none: the target widths from scratch for `epochs` epochs. partial | net2net:
    # progressive widening, 1/2 of the widths then the target (stages = 2). At equal time, scratch
    # (9 epochs) beat the widening (2 x 6) by 2-12 points on textures and shapes and matched it on
    # digits (benchmarks/progressive_vs_scratch.py, README), so the winners train from scratch.
    mode: str = "none"
    # Four widening stages of 3 epochs (1/8 ... 1) left 64-64-64-64-8 at 0.84 on digits (a
    # 1-wide layer in the first stage, 36 steps a stage); two of 6: 0.975.
    stages: int = 2
    epochs_per_stage: int = 6
    # All epochs of the training (None: stages x epochs_per_stage, 12). Set, it replaces
    # epochs_per_stage: the widening splits it over its stages, the later ones taking the rest.
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_epochs: float = 1.0  # linear learning-rate warm-up at the start of every stage
    # cosine: one decay to zero spanning all stages (the ground truth repeats across seeds);
    # constant: the rate stays at lr after each warm-up (the recipe before 2026-11-25).
    decay: str = "cosine"
    augment: bool = False  # random shifts (and flips for cifar10), drawn once per batch
    amp: bool = False  # mixed precision (bfloat16 autocast) on CUDA; no effect on the CPU
    net2net_noise: float = 0.01
    # Kernel statistics after training: ablations on this many validation images; a layer's lazy
    # kernels are the most that can be zeroed together, least important first, while validation
    # accuracy drops by less than lazy_threshold, measured first layer to last with the lazy
    # kernels of the layers below already zeroed (all of them together: < layers x threshold).
    analysis_images: int = 512
    lazy_threshold: float = 0.005
    # search slim / search run --slim / search simplify: epochs of fine-tuning after the lazy
    # kernels are removed or the symmetric ones snapped (at half the peak lr; benchmarks/slim_vs_scratch.py).
    fine_tune_epochs: int = 4

    @property
    def total_epochs(self) -> int:
        """Every epoch of the training, all stages together."""
        return self.stages * self.epochs_per_stage if self.epochs is None else self.epochs

    def stage_epochs(self) -> tuple[int, ...]:
        """Epochs of each widening stage: ``epochs`` split as evenly as it goes, later stages longer.

        Example:
            >>> FullTrainConfig(mode="partial", stages=2, epochs=7).stage_epochs()
            (3, 4)
        """
        share, rest = divmod(self.total_epochs, self.stages)
        return tuple(share + (stage >= self.stages - rest) for stage in range(self.stages))

    def describe(self) -> str:
        """The recipe in words, e.g. ``from scratch, 12 epochs, cosine rate``."""
        if self.mode == "none":
            how = f"from scratch, {self.total_epochs} epochs"
        else:
            how = f"{self.mode} widening, {'+'.join(map(str, self.stage_epochs()))} epochs"
        return f"{how}, {self.decay} rate"


# search simplify: kernels whose best symmetry score is >= the threshold are snapped; --sweep
# runs these thresholds (and a control that snaps nothing).
SIMPLIFY_THRESHOLD = 0.9
SIMPLIFY_SWEEP = (0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    data_dir: Path | None = None
    download: bool = False
    # Caps on the number of images used (None: all), for quick looks at big datasets.
    train_limit: int | None = None
    val_limit: int | None = None
    # Patches cut from scikit-image's photographs (``textures`` only), texture_size pixels a side
    # (28: the geometry of MNIST-like data; the patch then covers more of its photograph).
    texture_train: int = 2000
    texture_val: int = 1000
    texture_size: int = 16
    # Generated shapes (``shapes`` only): training and validation images, shapes_size pixels a side.
    shapes_train: int = 2000
    shapes_val: int = 1000
    shapes_size: int = 16
    # Size of the generated dataset (``synthetic`` only).
    synthetic_train: int = 2000
    synthetic_val: int = 500
    synthetic_classes: int = 10
    synthetic_image_size: int = 16


@dataclass(frozen=True)
class SearchConfig:
    budget_s: float = 180.0
    trials: int | None = None  # cap on finished trials in the study, counting resumed ones
    seed: int = 0
    pruner: str = "hyperband"
    sampler: str = "tpe"  # tpe (Optuna's TPE) | random (uniform over the space: a baseline)
    device: str = "auto"
    scorer: str = "proxy"  # what a trial's score is; see search/scorers.py
    backend: str = "local"  # local: trials one after another in this process; ray: Ray Tune
    # Second phase: the top_k proxy candidates are trained in full (FullTrainConfig) in
    # the last full_fraction of the budget, or less of it (local backend) when they are expected
    # to need less: the proxy phase goes on into the rest. top_k = 0 or full_fraction = 0 skips it.
    top_k: int = 3
    full_fraction: float = 0.4
    # accuracy: maximise the score; pareto: accuracy up and ``cost`` down (Optuna multi-objective).
    objective: str = "accuracy"
    cost: str = "params"  # the cost of the pareto objective: params (total), macs or latency
    # Limits that hold for every objective: a candidate over one is rejected before any training.
    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None
    latency_batch: int = 64  # images per timed forward pass of the latency measurement
    slim: bool = False  # after full training, remove the winner's lazy kernels and fine-tune (search/slim.py)

    @property
    def full_phase(self) -> bool:
        return self.top_k > 0 and self.full_fraction > 0


@dataclass(frozen=True)
class RayConfig:
    """``--backend ray``: where the trials run and what each one gets."""

    address: str | None = None  # None: a local Ray in this process; "auto", "HOST:PORT" or "ray://HOST:10001"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # fractions share a GPU's memory without isolation
    gpus_per_full: float | None = None  # each full-training task of the second phase; None: gpus_per_trial
    max_concurrent: int | None = None  # None: as many as the resources allow

    @property
    def full_gpus(self) -> float:
        return self.gpus_per_trial if self.gpus_per_full is None else self.gpus_per_full


@dataclass(frozen=True)
class FidelityConfig:
    """``search validate``: how well each scorer ranks candidates against full training."""

    candidates: int = 24  # width profiles sampled from the space
    # "spread": a Latin hypercube over each layer's choices (profiles of every overall width);
    # "equal-width": profiles of one overall width (the middle of the space) and different
    # shapes, which is what a width search under a cost limit has to tell apart.
    sample: str = "spread"
    scorers: tuple[str, ...] = SCORERS
    bootstrap: int = 1000  # resamples for the 95 % intervals of rho and tau
    # Full trainings per candidate (seeds seed, seed+1, ...): the target is their mean, and the
    # rho between seeds is the noise ceiling every scorer is measured against.
    full_seeds: int = 2
    # The proxy scored with this many seeds (seed, seed+1, ...: other random frozen layers and
    # tops): how far its own noise moves its rho, and how well two of its seeds agree. The
    # table's proxy row stays the first seed's, the score a search uses.
    proxy_seeds: int = 1
    # Full trainings at a time, in worker processes (search/workers.py): on a GPU one small
    # training keeps a few per cent of it busy. Their seconds are then timed N at a time.
    workers: int = 1


@dataclass(frozen=True)
class StoreConfig:
    """Where a search keeps its state: the Optuna study and, by default, the MLflow store."""

    path: Path = Path("runs")
    tracking_uri: str | None = None  # None: SQLite inside ``path``
    resume: bool = False
    study_name: str | None = None  # None: a new name, or with resume the latest study

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{(self.path / 'optuna.db').resolve()}"

    @property
    def mlflow_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{(self.path / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        return (self.path / "artifacts").resolve()


@dataclass(frozen=True)
class Config:
    space: SpaceConfig = field(default_factory=SpaceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    full: FullTrainConfig = field(default_factory=FullTrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    store: StoreConfig = field(default_factory=StoreConfig)

    def validate(self) -> Config:
        """Raise ``ConfigError`` for the first bad value; return self when all are fine."""
        _validate_space(self.space)
        _validate_model(self.model, self.space)
        _validate_proxy(self.proxy)
        _validate_full(self.full)
        _validate_data(self.data)
        _validate_search(self.search)
        _validate_fidelity(self.fidelity)
        _validate_ray(self.ray)
        _validate_store(self.store)
        return self

    def to_flat_dict(self) -> dict[str, Any]:
        """``{"space.layers": 5, ...}``: for logging as MLflow params."""
        flat: dict[str, Any] = {}
        for section in fields(self):
            for key, value in dataclasses.asdict(getattr(self, section.name)).items():
                flat[f"{section.name}.{key}"] = value
        return flat


# -- parsing ------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smh])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"1h30m"`` or plain seconds -> seconds."""
    stripped = str(text).strip().lower()
    try:
        seconds = float(stripped)
    except ValueError:
        parts = _DURATION.findall(stripped)
        if not parts or "".join(n + u for n, u in parts) != stripped:
            raise ConfigError(f"budget {text!r} is not a duration like 90s, 10m, 2h or 1h30m") from None
        seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"budget {text!r} must be more than zero")
    return seconds


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """``"8,16,32"`` or ``"8-16-32"`` -> (8, 16, 32); every item a positive integer."""
    items = [item for item in re.split(r"[,\-\s]+", str(text).strip()) if item]
    values = []
    for item in items:
        if not item.isdigit() or int(item) < 1:
            raise ConfigError(f"{what} {item!r} is not a positive integer (in {text!r})")
        values.append(int(item))
    if not values:
        raise ConfigError(f"{what} {text!r} names no value")
    return tuple(values)


def load_toml(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from None


def from_mapping(mapping: dict[str, dict[str, Any]], base: Config | None = None) -> Config:
    """Overlay a ``{section: {key: value}}`` mapping (parsed TOML) on ``base``."""
    config = base or Config()
    for section_name, values in mapping.items():
        if section_name not in {f.name for f in fields(Config)} or not isinstance(values, dict):
            raise ConfigError(f"unknown config section [{section_name}]")
        section = getattr(config, section_name)
        known = {f.name for f in fields(section)}
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown setting {key!r} in [{section_name}]; known: {', '.join(sorted(known))}")
        converted = {key: _convert(section_name, key, value) for key, value in values.items()}
        if section_name == "space" and "width_choices" not in values and {"width_min", "width_max",
                                                                          "width_step"} & set(values):
            converted["width_choices"] = None  # a range was asked for: it replaces the default choices
        config = replace(config, **{section_name: replace(section, **converted)})
    return config


def _convert(section: str, key: str, value: Any) -> Any:
    if key == "budget_s" and isinstance(value, str):
        return parse_duration(value)
    if key in ("data_dir", "path") and value is not None:
        return Path(os.path.expanduser(str(value)))
    if key == "train_images" and value == "all":
        return None
    if key == "lr_fan_in" and value == "none":
        return None
    if key == "layer_choices" and value is not None:
        return tuple(tuple(v) for v in value)
    if isinstance(value, list):
        return tuple(value)
    return value


# -- validation ---------------------------------------------------------------------


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _require_positive_int(value: Any, what: str) -> None:
    if not _is_positive_int(value):
        raise ConfigError(f"{what} {value!r} is not a positive integer")


def _validate_space(space: SpaceConfig) -> None:
    _require_positive_int(space.layers, "layers")
    if space.layer_choices is not None:
        if len(space.layer_choices) != space.layers:
            raise ConfigError(
                f"layer_choices has {len(space.layer_choices)} entries but there are {space.layers} conv layers"
            )
        for layer, choices in enumerate(space.layer_choices):
            if not choices:
                raise ConfigError(f"layer_choices for layer {layer + 1} is empty")
            for width in choices:
                _require_positive_int(width, "width")
    elif space.width_choices is not None:
        if (space.width_min, space.width_max, space.width_step) != (8, 256, 8):
            raise ConfigError(f"the space sets both width_choices {space.width_choices} and a width range "
                              f"{space.width_min}:{space.width_max}:{space.width_step}; set width_choices to None "
                              "to use the range")
        if not space.width_choices:
            raise ConfigError("width_choices is empty")
        for width in space.width_choices:
            _require_positive_int(width, "width")
    else:
        for name in ("width_min", "width_max", "width_step"):
            _require_positive_int(getattr(space, name), name)
        if space.width_min > space.width_max:
            raise ConfigError(f"width_min {space.width_min} is larger than width_max {space.width_max}")
    if not space.frozen_layers:
        raise ConfigError("frozen_layers names no value")
    for frozen in space.frozen_layers:
        if not isinstance(frozen, int) or not 0 <= frozen < space.layers:
            raise ConfigError(
                f"frozen layers {frozen!r} must be between 0 and {space.layers - 1} for {space.layers} conv layers"
            )


def _validate_model(model: ModelConfig, space: SpaceConfig) -> None:
    for units in model.hidden:
        _require_positive_int(units, "hidden width")
    if model.pool_after is not None:
        for index in model.pool_after:
            if not isinstance(index, int) or not 0 <= index < space.layers:
                raise ConfigError(f"pool_after index {index!r} is not a conv layer (0..{space.layers - 1})")
    for name in ("max_kernel_norm", "max_column_norm"):
        value = getattr(model, name)
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise ConfigError(f"{name} {value!r} must be a positive number")
    if not 0 < model.norm_fraction <= 1:
        raise ConfigError(f"norm_fraction {model.norm_fraction!r} must be in (0, 1]")


def _validate_optimiser(batch_size: int, lr: float, weight_decay: float, whose: str) -> None:
    _require_positive_int(batch_size, f"{whose} batch size")
    if not lr > 0:
        raise ConfigError(f"{whose} learning rate {lr!r} must be positive")
    if weight_decay < 0:
        raise ConfigError(f"{whose} weight decay {weight_decay!r} must not be negative")


def _validate_proxy(proxy: ProxyConfig) -> None:
    _require_positive_int(proxy.epochs, "proxy epochs")
    _require_positive_int(proxy.replicas, "proxy replicas")
    _validate_optimiser(proxy.batch_size, proxy.lr, proxy.weight_decay, "proxy")
    if proxy.cache_mb < 0:
        raise ConfigError(f"cache size {proxy.cache_mb!r} MB must not be negative")
    if proxy.train_images is not None:
        _require_positive_int(proxy.train_images, "proxy training images (a count or 'all')")
    if not proxy.warmup_epochs >= 0:
        raise ConfigError(f"proxy warm-up epochs {proxy.warmup_epochs!r} must not be negative")
    if proxy.lr_fan_in is not None:
        _require_positive_int(proxy.lr_fan_in, "proxy lr_fan_in (a channel count or 'none')")
    if proxy.decay not in DECAYS:
        raise ConfigError(f"unknown learning-rate decay {proxy.decay!r}; choose one of {', '.join(DECAYS)}")
    if not isinstance(proxy.frozen_per_replica, bool):
        raise ConfigError(f"proxy frozen_per_replica {proxy.frozen_per_replica!r} must be true or false")
    for name in ("width_weight", "frozen_width_weight", "last_frozen_width_weight"):
        weight = getattr(proxy, name)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
            raise ConfigError(f"proxy {name} {weight!r} must be a number >= 0 (accuracy per halving of a "
                              "layer's width; 0: no penalty)")


def _validate_full(full: FullTrainConfig) -> None:
    if full.mode not in WIDEN_CHOICES:
        raise ConfigError(f"unknown progressive mode {full.mode!r}; choose one of {', '.join(WIDEN_CHOICES)}")
    _require_positive_int(full.stages, "stages")
    _require_positive_int(full.epochs_per_stage, "epochs per stage")
    if full.epochs is not None:
        _require_positive_int(full.epochs, "full-training epochs")
        if full.mode != "none" and full.epochs < full.stages:
            raise ConfigError(f"full-training epochs {full.epochs} are fewer than the {full.stages} widening stages")
    _validate_optimiser(full.batch_size, full.lr, full.weight_decay, "full training")
    if full.decay not in DECAYS:
        raise ConfigError(f"unknown learning-rate decay {full.decay!r}; choose one of {', '.join(DECAYS)}")
    if full.net2net_noise < 0:
        raise ConfigError(f"net2net noise {full.net2net_noise!r} must not be negative")
    if not full.warmup_epochs >= 0:
        raise ConfigError(f"warm-up epochs {full.warmup_epochs!r} must not be negative")
    _require_positive_int(full.analysis_images, "analysis images")
    if not isinstance(full.fine_tune_epochs, int) or full.fine_tune_epochs < 0:
        raise ConfigError(f"fine-tune epochs {full.fine_tune_epochs!r} must be a non-negative integer")
    if not 0 <= full.lazy_threshold <= 1:
        raise ConfigError(f"lazy threshold {full.lazy_threshold!r} must be an accuracy change in [0, 1]")


def _validate_data(data: DataConfig) -> None:
    if data.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {data.dataset!r}; choose one of {', '.join(DATASETS)}")
    if data.dataset in TORCHVISION_DATASETS:
        if data.data_dir is None:
            raise ConfigError(f"dataset {data.dataset!r} needs --data-dir (add --download to fetch it there)")
        if not data.download and not data.data_dir.is_dir():
            raise ConfigError(f"data dir {str(data.data_dir)!r} does not exist (add --download to fetch it)")
    for name in ("train_limit", "val_limit"):
        value = getattr(data, name)
        if value is not None:
            _require_positive_int(value, name)
    for name in ("texture_train", "texture_val", "shapes_train", "shapes_val", "synthetic_train", "synthetic_val",
                 "synthetic_classes"):
        _require_positive_int(getattr(data, name), name)
    if data.synthetic_classes < 2:
        raise ConfigError(f"synthetic_classes {data.synthetic_classes} must be at least 2")
    for name, side, least in (("synthetic_image_size", data.synthetic_image_size, 4),
                              ("texture_size", data.texture_size, 4), ("shapes_size", data.shapes_size, 8)):
        if not _is_positive_int(side) or side < least:
            raise ConfigError(f"{name} {side!r} must be an integer >= {least}")


def _validate_search(search: SearchConfig) -> None:
    if not search.budget_s > 0:
        raise ConfigError(f"budget {search.budget_s!r} s must be more than zero")
    if search.trials is not None:
        _require_positive_int(search.trials, "trials")
    if not isinstance(search.seed, int) or search.seed < 0:
        raise ConfigError(f"seed {search.seed!r} must be a non-negative integer")
    if search.pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner {search.pruner!r}; choose one of {', '.join(PRUNERS)}")
    if search.sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {search.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if search.device not in DEVICES:
        raise ConfigError(f"unknown device {search.device!r}; choose one of {', '.join(DEVICES)}")
    if search.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {search.backend!r}; choose one of {', '.join(BACKENDS)}")
    if search.scorer not in SCORERS:
        raise ConfigError(f"unknown scorer {search.scorer!r}; choose one of {', '.join(SCORERS)}")
    if not isinstance(search.top_k, int) or search.top_k < 0:
        raise ConfigError(f"top-k {search.top_k!r} must be a non-negative integer")
    if not 0 <= search.full_fraction < 1:
        raise ConfigError(f"full fraction {search.full_fraction!r} must be in [0, 1)")
    if search.objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {search.objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if search.cost not in COSTS:
        raise ConfigError(f"unknown cost {search.cost!r}; choose one of {', '.join(COSTS)}")
    if search.objective == "pareto" and search.scorer != "proxy":
        raise ConfigError(f"--objective pareto trades the proxy's accuracy against cost; scorer {search.scorer!r} "
                          "gives no accuracy")
    for name in ("max_params", "max_macs"):
        if getattr(search, name) is not None:
            _require_positive_int(getattr(search, name), name.replace("_", " "))
    if search.max_latency_ms is not None and not search.max_latency_ms > 0:
        raise ConfigError(f"max latency {search.max_latency_ms!r} ms must be more than zero")
    _require_positive_int(search.latency_batch, "latency batch")


def _validate_ray(ray: RayConfig) -> None:
    if ray.address is not None and not re.match(r"^(auto|ray://[^\s/]+|[\w.\-]+:\d+)$", ray.address):
        raise ConfigError(f"Ray address {ray.address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    if not ray.cpus_per_trial > 0:
        raise ConfigError(f"cpus per trial {ray.cpus_per_trial!r} must be more than zero")
    if not ray.gpus_per_trial >= 0 or (ray.gpus_per_trial > 1 and ray.gpus_per_trial != int(ray.gpus_per_trial)):
        raise ConfigError(f"gpus per trial {ray.gpus_per_trial!r} must be a fraction in [0, 1] or a whole number")
    if ray.gpus_per_full is not None and (not ray.gpus_per_full >= 0 or (
            ray.gpus_per_full > 1 and ray.gpus_per_full != int(ray.gpus_per_full))):
        raise ConfigError(f"gpus per full {ray.gpus_per_full!r} must be a fraction in [0, 1] or a whole number")
    if ray.max_concurrent is not None:
        _require_positive_int(ray.max_concurrent, "max concurrent trials")


def _validate_fidelity(fidelity: FidelityConfig) -> None:
    if not _is_positive_int(fidelity.candidates) or fidelity.candidates < 3:
        raise ConfigError(f"candidates {fidelity.candidates!r} must be an integer >= 3 (a rank correlation needs 3)")
    if not fidelity.scorers:
        raise ConfigError("scorers names no value")
    for name in fidelity.scorers:
        if name in COMBINED:
            parts = COMBINED[name].needs
            raise ConfigError(f"scorer {name!r} is not chosen: validate reports it whenever "
                              f"{' and '.join(parts)} {'is' if len(parts) == 1 else 'are both'} among the scorers")
        if name not in SCORERS:
            raise ConfigError(f"unknown scorer {name!r}; choose among {', '.join(SCORERS)}")
    _require_positive_int(fidelity.bootstrap, "bootstrap resamples")
    _require_positive_int(fidelity.full_seeds, "full seeds")
    _require_positive_int(fidelity.proxy_seeds, "proxy seeds")
    _require_positive_int(fidelity.workers, "workers")
    if fidelity.proxy_seeds > 1 and "proxy" not in fidelity.scorers:
        raise ConfigError(f"proxy seeds {fidelity.proxy_seeds}: the proxy is not among the scorers "
                          f"({', '.join(fidelity.scorers)})")
    if fidelity.sample not in SAMPLES:
        raise ConfigError(f"unknown sample {fidelity.sample!r}; choose among {', '.join(SAMPLES)}")


def nearest_existing(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _validate_store(store: StoreConfig) -> None:
    # Checked without creating anything, so a bad command leaves no trace.
    existing = nearest_existing(store.path)
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"store {str(store.path)!r} is not a directory ({str(existing)!r} is a file)")
    try:  # a real probe: os.access says yes to root on a read-only mount
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError:
        raise ConfigError(f"store {str(store.path)!r} is not writable") from None
    if store.tracking_uri is not None and not re.match(r"^[a-z][a-z0-9+.\-]*:", store.tracking_uri):
        raise ConfigError(f"tracking URI {store.tracking_uri!r} is not a URI like http://host:5000 or sqlite:///file.db")
