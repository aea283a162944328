"""The search space as Optuna sees it: from a trial to a candidate, the first trial, what a trial records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna

from search.config import ProxyConfig, SpaceConfig
from search.cost import Cost
from search.proxy import Candidate


def suggest_candidate(trial: optuna.Trial, space: SpaceConfig) -> Candidate:
    """Ask Optuna for one candidate; width ranges are ordinal (suggest_int with a step)."""
    widths = []
    for layer in range(space.layers):
        name = f"width_{layer + 1}"
        if space.categorical:
            widths.append(int(trial.suggest_categorical(name, list(space.choices(layer)))))
        else:
            widths.append(trial.suggest_int(name, space.width_min, space.width_max, step=space.width_step))
    if len(space.frozen_layers) == 1:
        frozen = space.frozen_layers[0]
    else:
        frozen = int(trial.suggest_categorical("frozen_layers", list(space.frozen_layers)))
    return Candidate(tuple(widths), frozen)


def starting_params(space: SpaceConfig) -> dict[str, Any]:
    """The first trial of a new study: the middle width of each layer's choices and the fewest
    frozen layers offered. A cheap, sensible profile, so a search of any budget has a result.

    Example:
        >>> starting_params(SpaceConfig(layers=2))
        {'width_1': 16, 'width_2': 16}
    """
    params: dict[str, Any] = {}
    for layer in range(space.layers):
        choices = space.choices(layer)
        params[f"width_{layer + 1}"] = choices[(len(choices) - 1) // 2]
    if len(space.frozen_layers) > 1:
        params["frozen_layers"] = min(space.frozen_layers)
    return params


def trial_identity(candidate: Candidate, cost: Cost) -> dict[str, Any]:
    """What every backend records of a trial, as MLflow params (with the seed) and Optuna user attributes."""
    return {"widths": candidate.label, "frozen_layers": candidate.frozen_layers, **cost.record()}


def narrowest(space: SpaceConfig) -> Candidate:
    """The cheapest candidate of the space: the smallest width of every layer.

    Example:
        >>> narrowest(SpaceConfig(layers=3, width_choices=(8, 4, 16), frozen_layers=(2, 1)))
        Candidate(widths=(4, 4, 4), frozen_layers=1)
    """
    return Candidate(tuple(min(space.choices(layer)) for layer in range(space.layers)), min(space.frozen_layers))


def widest(space: SpaceConfig) -> tuple[int, ...]:
    """The widths of the space's largest candidate: the largest width of every layer.

    Example:
        >>> widest(SpaceConfig(layers=3, width_choices=(8, 4, 16)))
        (16, 16, 16)
    """
    return tuple(max(space.choices(layer)) for layer in range(space.layers))


def layer_weights(layers: int, proxy: ProxyConfig, frozen_layers: int = 0) -> tuple[float, ...]:
    """The score's weight per halving of each layer's width: ``frozen_width_weight`` for the frozen
    layers below the last, ``last_frozen_width_weight`` for the last frozen one, ``width_weight``
    for the trained ones.

    Example:
        >>> layer_weights(5, ProxyConfig(), 2), layer_weights(3, ProxyConfig(width_weight=0.01), 0)
        ((0.008, 0.008, 0.02, 0.02, 0.02), (0.01, 0.01, 0.01))
    """
    below = (proxy.frozen_width_weight,) * max(frozen_layers - 1, 0)
    last = (proxy.last_frozen_width_weight,) if frozen_layers > 0 else ()
    return (*below, *last, *(proxy.width_weight,) * (layers - frozen_layers))


def width_penalty(widths: tuple[int, ...], space: SpaceConfig, proxy: ProxyConfig, frozen_layers: int = 0) -> float:
    """What the proxy's score takes off its accuracy: each layer's weight (``layer_weights``) per
    halving of its width below the widest the space allows it.

    Example:
        >>> space = SpaceConfig(layers=3, width_choices=(4, 8, 16))
        >>> width_penalty((16, 4, 16), space, ProxyConfig(width_weight=0.01))
        0.02
        >>> split = ProxyConfig(width_weight=0.02, frozen_width_weight=0.005, last_frozen_width_weight=0.001)
        >>> round(width_penalty((4, 4, 16), space, split, 2), 6)  # 2 halvings x 0.005 + 2 x 0.001
        0.012
    """
    return halvings_penalty(widths, widest(space), layer_weights(space.layers, proxy, frozen_layers))


def halvings_penalty(widths: Sequence[int], widest: Sequence[int], weights: Sequence[float]) -> float:
    """``weights[l]`` per halving of layer l's width below ``widest[l]``.

    Example:
        >>> halvings_penalty((16, 4, 64), (64, 64, 64), (0.01, 0.02, 0.02))
        0.1
    """
    return float(sum(w * math.log2(top / width) for w, top, width in zip(weights, widest, widths, strict=True)))


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's TPE, or uniform random sampling (a baseline for the benchmarks)."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)
