import math

import pytest
import torch

from models import ConvNet, apply_max_norm_, chi_mean, init_weight_, norm_aware_std, unit_norms
from search.train import TrainSettings, fit


@pytest.mark.parametrize("n", [1, 2, 9, 27, 288])
def test_chi_mean_matches_sampled_norms(n: int) -> None:
    samples = torch.randn(200_000, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert chi_mean(n) == pytest.approx(samples.norm(dim=1).mean().item(), rel=5e-3)


def test_chi_mean_known_values() -> None:
    assert chi_mean(1) == pytest.approx(math.sqrt(2 / math.pi))
    assert chi_mean(2) == pytest.approx(math.sqrt(math.pi / 2))


@pytest.mark.parametrize("shape", [(2000, 3, 3, 3), (2000, 64, 3, 3), (2000, 256)])
def test_expected_initial_norm_is_the_chosen_fraction_of_the_maximum(shape: tuple[int, ...]) -> None:
    weight = torch.empty(shape)
    init_weight_(weight, max_norm=2.0, norm_fraction=0.5, generator=torch.Generator().manual_seed(1))
    assert unit_norms(weight).mean().item() == pytest.approx(1.0, rel=0.02)


def test_without_constraint_the_scale_is_he() -> None:
    assert norm_aware_std(torch.empty(8, 4, 3, 3), None) == pytest.approx(math.sqrt(2 / 36))


def test_max_norm_projection_caps_only_units_above_the_maximum() -> None:
    weight = torch.stack([torch.full((4,), 2.0), torch.full((4,), 0.1)])  # norms 4.0 and 0.2
    apply_max_norm_(weight, 1.0)
    assert unit_norms(weight).tolist() == pytest.approx([1.0, 0.2], rel=1e-4)
    assert torch.allclose(weight[1], torch.full((4,), 0.1))


def test_constraint_holds_after_every_optimiser_step() -> None:
    net = ConvNet((4, 8), 1, 8, 3, hidden=(8,), max_kernel_norm=0.3, max_column_norm=0.3, seed=0)
    x, y = torch.randn(128, 1, 8, 8), torch.randint(3, (128,))
    seen: list[float] = []

    def after_step() -> None:
        net.apply_constraints_()
        seen.append(max(unit_norms(m.weight).max().item() for m in [*net.convs(), *net.linears()]))

    fit(net, x, y, x, y, TrainSettings(epochs=3, batch_size=16, lr=0.1), after_step=after_step)
    assert seen and max(seen) <= 0.3 + 1e-5
