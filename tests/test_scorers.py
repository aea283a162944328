"""Each scorer on tiny models, against a property its paper's definition implies."""

import math

import pytest
import torch

from models import ConvNet
from search.config import ModelConfig, ProxyConfig
from search.data import TensorData
from search.proxy import Candidate
from search.scorers import SCORERS, ScorerSettings, grad_norm, naswot, synflow

SETTINGS = ScorerSettings(ModelConfig(hidden=(16,)), ProxyConfig(epochs=1, batch_size=64), seed=0, minibatch=32)


def test_params_is_the_counted_parameters_of_the_whole_network(tiny_data: TensorData) -> None:
    candidate = Candidate((4, 8, 8), frozen_layers=1)
    net = ConvNet((4, 8, 8), tiny_data.in_channels, tiny_data.image_size, tiny_data.num_classes, hidden=(16,))
    assert SCORERS["params"](candidate, tiny_data, SETTINGS) == sum(p.numel() for p in net.parameters())


def test_synflow_is_positive_and_grows_with_width_at_fixed_depth(tiny_data: TensorData) -> None:
    scores = [SCORERS["synflow"](Candidate((w, w, w), 1), tiny_data, SETTINGS) for w in (2, 4, 8, 16)]
    assert all(s > 0 for s in scores)
    assert scores == sorted(scores) and len(set(scores)) == 4


def test_synflow_leaves_the_model_unchanged(tiny_data: TensorData) -> None:
    net = ConvNet((4, 4), 1, 8, 3, hidden=(8,))
    before = [p.clone() for p in net.parameters()]
    synflow(net, (1, 8, 8))
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert all(p.grad is None for p in net.parameters())


def test_naswot_is_higher_when_relu_codes_differ_across_inputs() -> None:
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    varied = ConvNet((8, 8), 1, 8, 3, hidden=(16,), seed=0)
    collapsed = ConvNet((8, 8), 1, 8, 3, hidden=(16,), seed=0)
    with torch.no_grad():  # the first conv ignores its input: every image gets the same code
        collapsed.convs()[0].weight.zero_()
        collapsed.convs()[0].bias.fill_(1.0)
    assert math.isfinite(naswot(varied, x))
    assert naswot(varied, x) > naswot(collapsed, x)
    assert naswot(collapsed, x) == float("-inf")  # identical codes: K is singular


def test_naswot_of_distinct_orthogonal_codes_is_the_log_determinant_of_a_known_matrix() -> None:
    # One ReLU layer over 2 units; inputs whose codes are 10, 01 and 11: K = units - Hamming distance.
    layer = torch.nn.Sequential(torch.nn.ReLU())
    x = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
    expected = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [1.0, 1.0, 2.0]])
    assert naswot(layer, x) == pytest.approx(math.log(torch.linalg.det(expected).item()))


def test_grad_norm_sums_the_norms_of_each_parameter_gradient() -> None:
    net = ConvNet((4, 4), 1, 8, 3, hidden=(8,), seed=0)
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss = torch.nn.functional.cross_entropy(net(x), y)
    expected = sum(g.norm().item() for g in torch.autograd.grad(loss, list(net.parameters())))
    assert grad_norm(net, x, y) == pytest.approx(expected, rel=1e-5)
    assert all(p.grad is None for p in net.parameters())  # no gradients left behind


def test_every_scorer_is_deterministic(tiny_data: TensorData) -> None:
    candidate = Candidate((4, 8, 8), 1)
    for name, scorer in SCORERS.items():
        assert scorer(candidate, tiny_data, SETTINGS) == scorer(candidate, tiny_data, SETTINGS), name
