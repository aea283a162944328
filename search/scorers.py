"""Scorers: functions from (candidate, data, settings) to a number that should rank candidates
the way full training does. Higher is better for every one of them.

- ``proxy``: ours. Frozen random lower layers, cached features, the top trained for a few
  epochs; the score is validation accuracy (``search.proxy.score_candidate``).
- ``params``: the trained parameter count of the candidate with nothing frozen.
- ``synflow``: Synaptic Flow, Tanaka, Kunin, Yamins and Ganguli, "Pruning neural networks
  without any data by iteratively conserving synaptic flow", NeurIPS 2020; used as a
  zero-cost NAS proxy by Abdelfattah, Mehrotra, Dudziak and Lane, "Zero-Cost Proxies for
  Lightweight NAS", ICLR 2021. Replace every weight by its absolute value, feed an all-ones
  input, R = sum of the outputs; score = sum over all weights of theta * dR/dtheta.
- ``naswot``: Mellor, Turner, Storkey and Crowley, "Neural Architecture Search without
  Training", ICML 2021. For a minibatch, each input's binary code is which ReLUs are
  active; K[i, j] = number of units minus the Hamming distance of the codes of i and j;
  score = log |det K|.
- ``grad_norm``: Abdelfattah et al. 2021: the sum over layers of the Euclidean norm of the
  gradient of the cross-entropy loss on one minibatch, at initialisation.

Zero-cost scorers look at the whole network at its random initialisation (nothing frozen),
as in their papers; ``proxy`` uses the candidate's frozen layers.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from models import ConvNet
from search.config import ModelConfig, ProxyConfig
from search.data import TensorData
from search.proxy import Candidate, ProxyResult, build_model, score_candidate

MINIBATCH = 128  # images for naswot and grad_norm (Mellor et al. use 128)


@dataclass(frozen=True)
class ScorerSettings:
    model: ModelConfig
    proxy: ProxyConfig
    seed: int = 0
    minibatch: int = MINIBATCH


Scorer = Callable[[Candidate, TensorData, ScorerSettings], float]


def at_init(candidate: Candidate, data: TensorData, settings: ScorerSettings) -> ConvNet:
    """The candidate's network at its random initialisation, every layer trainable."""
    return build_model(replace(candidate, frozen_layers=0), data, settings.model, settings.seed)


def minibatch(data: TensorData, settings: ScorerSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random minibatch of training images (the same for every candidate)."""
    generator = torch.Generator().manual_seed(settings.seed)
    index = torch.randperm(len(data.y_train), generator=generator)[: settings.minibatch].to(data.y_train.device)
    return data.x_train[index], data.y_train[index]


def proxy_score(candidate: Candidate, data: TensorData, settings: ScorerSettings) -> float:
    return score_candidate(candidate, data, settings.model, settings.proxy, settings.seed).score


def params_score(candidate: Candidate, data: TensorData, settings: ScorerSettings) -> float:
    return float(at_init(candidate, data, settings).trained_params())


def synflow_score(candidate: Candidate, data: TensorData, settings: ScorerSettings) -> float:
    return synflow(at_init(candidate, data, settings), (data.in_channels, data.image_size, data.image_size))


def synflow(model: nn.Module, input_shape: tuple[int, int, int]) -> float:
    """Synaptic flow of ``model`` (left unchanged); computed in float64 on a copy, because the
    products of |weights| over depth overflow float32 for wide nets."""
    flow = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.abs_()
    device = next(flow.parameters()).device
    flow.zero_grad()
    flow(torch.ones(1, *input_shape, dtype=torch.float64, device=device)).sum().backward()
    with torch.no_grad():
        return float(sum((p * p.grad).sum() for p in flow.parameters() if p.grad is not None))


def naswot_score(candidate: Candidate, data: TensorData, settings: ScorerSettings) -> float:
    x, _ = minibatch(data, settings)
    return naswot(at_init(candidate, data, settings), x)


def naswot(model: nn.Module, x: torch.Tensor) -> float:
    """log |det K_H| of the binary ReLU codes of ``x``; -inf when two inputs share a code."""
    codes: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: codes.append((out > 0).flatten(1).double()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    c = torch.cat(codes, dim=1)
    kernel = c @ c.T + (1 - c) @ (1 - c).T  # units minus Hamming distance
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign != 0 else float("-inf")


def grad_norm_score(candidate: Candidate, data: TensorData, settings: ScorerSettings) -> float:
    x, y = minibatch(data, settings)
    return grad_norm(at_init(candidate, data, settings), x, y)


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over parameter tensors of the Euclidean norm of the loss gradient on (x, y)."""
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        total = float(sum(p.grad.norm() for p in model.parameters() if p.grad is not None))
    model.zero_grad()
    return total


SCORERS: dict[str, Scorer] = {
    "proxy": proxy_score,
    "params": params_score,
    "synflow": synflow_score,
    "naswot": naswot_score,
    "grad_norm": grad_norm_score,
}


def zero_cost_trial(name: str, candidate: Candidate, data: TensorData, settings: ScorerSettings) -> ProxyResult:
    """A search trial scored by ``name`` instead of the proxy: no epochs, nothing cached."""
    start = time.perf_counter()
    score = SCORERS[name](candidate, data, settings)
    model = build_model(candidate, data, settings.model, settings.seed)
    return ProxyResult(candidate, score, (), model.trained_params(), model.frozen_params(), cached=False,
                       cache_time_s=0.0, seconds=time.perf_counter() - start)
