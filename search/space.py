"""The search space as Optuna sees it: from a trial to a candidate, the first trial, what a trial records."""

from __future__ import annotations

import math
from typing import Any

import optuna

from search.config import SpaceConfig
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


def width_penalty(widths: tuple[int, ...], space: SpaceConfig, weight: float, frozen_layers: int = 0,
                  frozen_weight: float = 0.0) -> float:
    """What the proxy's score takes off its accuracy: ``weight`` (``ProxyConfig.width_weight``) per
    halving of each trained layer's width below the widest the space allows it, and
    ``frozen_weight`` (``frozen_width_weight``) per halving of each of the lower ``frozen_layers``.

    Example:
        >>> space = SpaceConfig(layers=3, width_choices=(4, 8, 16))
        >>> width_penalty((16, 4, 16), space, 0.01), width_penalty((4, 16, 16), space, 0.02, 1, 0.005)
        (0.02, 0.01)
    """
    halvings = [math.log2(top / width) for top, width in zip(widest(space), widths, strict=True)]
    return frozen_weight * sum(halvings[:frozen_layers]) + weight * sum(halvings[frozen_layers:])


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's TPE, or uniform random sampling (a baseline for the benchmarks)."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)
