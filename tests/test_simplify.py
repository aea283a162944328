"""Kernel simplification: exact symmetric projections, frozen through fine-tuning, measured and recorded."""

import copy
from pathlib import Path

import pytest
import torch

from conftest import run_cli, trained_run
from models import ConvNet
from models.kernels import SYMMETRIES, symmetry_scores
from models.symmetry import Freeze, free_parameters, orbits, plan, project, snap_
from search.data import make_synthetic
from search.simplify import simplify_model
from search.tracking import Tracker
from search.train import TrainSettings, evaluate, fit


@pytest.mark.parametrize("symmetry", SYMMETRIES)
def test_the_projection_is_idempotent_orthogonal_and_exactly_symmetric(symmetry: str) -> None:
    w = torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    p = project(w, symmetry)
    assert p.shape == w.shape and p.dtype == w.dtype
    assert torch.equal(project(p, symmetry), p)  # idempotent, bit for bit
    assert torch.equal(symmetry_scores(p)[symmetry], torch.ones(5))  # exactly 1, not nearly
    assert (symmetry_scores(w)[symmetry] < 0.9).all()  # random kernels were not symmetric
    # Orthogonal: what the projection removes is orthogonal to every symmetric kernel.
    other = project(torch.randn(5, 4, 3, 3), symmetry)
    assert abs(((w - p) * other).sum().item()) < 1e-4
    # The symmetric kernels have one free parameter per orbit.
    assert len(set(orbits(symmetry, 3, 3))) == free_parameters(symmetry)


def test_free_parameters_and_kernels_that_already_have_the_symmetry() -> None:
    assert {s: free_parameters(s) for s in SYMMETRIES} == {
        "mirror_lr": 6, "mirror_ud": 6, "same_rows": 3, "same_cols": 3, "rot90": 3, "rot180": 5}
    edge = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]).view(1, 1, 3, 3)  # Sobel x
    assert torch.equal(project(edge, "mirror_ud"), edge)
    for antisymmetric in ("mirror_lr", "rot180"):  # nothing of it is left
        assert torch.equal(project(edge, antisymmetric), torch.zeros_like(edge))
    rows = torch.tensor([[1.0, 2.0, 3.0]] * 3).view(1, 1, 3, 3)
    assert torch.equal(project(rows, "same_rows"), rows)
    assert torch.equal(project(rows, "same_cols"), torch.full_like(rows, 2.0))
    with pytest.raises(ValueError, match="rot90 needs square kernels"):
        orbits("rot90", 3, 5)


def trained_net() -> tuple[ConvNet, object]:
    torch.manual_seed(0)
    data = make_synthetic(256, 128, num_classes=4, image_size=8, seed=0)
    net = ConvNet((6, 8, 8), data.in_channels, data.image_size, data.num_classes, hidden=(16,), seed=0)
    fit(net.zero_classifier_(), data.x_train, data.y_train, data.x_val, data.y_val,
        TrainSettings(epochs=3, batch_size=64, lr=3e-3))
    return net, data


def test_snapped_kernels_stay_exactly_symmetric_and_frozen_while_the_rest_trains() -> None:
    net, data = trained_net()
    before = copy.deepcopy(net)
    threshold = 0.45  # about half of these kernels' best scores lie above it
    simplified, report = simplify_model(net, data, threshold, epochs=2, lr=3e-3, batch_size=64)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), before.state_dict().values(),
                                                  strict=True))  # the trained model is left alone
    assert 0 < report.simplified < sum(net.widths) and report.epochs == 2
    assert report.free_after < report.free_before and 0 < report.removed_share < 1
    for layer_plan, conv, old in zip(report.plans, simplified.convs(), net.convs(), strict=True):
        scores = symmetry_scores(conv.weight)
        for k, (best, chosen) in enumerate(zip(layer_plan.best, layer_plan.chosen, strict=True)):
            if chosen:
                assert layer_plan.score[k] >= threshold
                assert scores[best][k].item() == 1.0  # still exactly symmetric after fine-tuning
                assert torch.equal(conv.weight[k], project(old.weight[k], best))
                assert conv.bias[k] == old.bias[k]
            else:
                assert layer_plan.score[k] < threshold and not torch.equal(conv.weight[k], old.weight[k])
    assert report.tuned_acc == evaluate(simplified, data.x_val, data.y_val, 64)[1]


def test_freeze_holds_the_chosen_kernels_under_weight_decay_and_lets_go_after_remove() -> None:
    net, data = trained_net()
    plans = plan(net, 0.0, layers=[1])  # every kernel of layer 2 only
    assert [p.simplified for p in plans] == [0, 8, 0]
    snap_(net, plans)
    held = net.convs()[1].weight.detach().clone()
    freeze = Freeze(net, plans)
    fit(net, data.x_train, data.y_train, data.x_val, data.y_val,
        TrainSettings(epochs=1, batch_size=64, lr=1e-2, weight_decay=0.1), after_step=freeze.restore)
    assert torch.equal(net.convs()[1].weight, held)
    freeze.remove()
    fit(net, data.x_train, data.y_train, data.x_val, data.y_val, TrainSettings(epochs=1, batch_size=64, lr=1e-2))
    assert not torch.equal(net.convs()[1].weight, held)


def test_a_threshold_above_every_score_changes_nothing() -> None:
    net, data = trained_net()
    simplified, report = simplify_model(net, data, 1.0, epochs=2, lr=3e-3, batch_size=64)
    assert report.simplified == 0 and report.epochs == 0 and report.removed_share == 0
    assert report.val_acc == report.projected_acc == report.tuned_acc
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), simplified.state_dict().values(),
                                                  strict=True))
    # The control snaps nothing and fine-tunes all the same.
    _, control = simplify_model(net, data, None, epochs=1, lr=3e-3, batch_size=64)
    assert control.simplified == 0 and control.epochs == 1


@pytest.mark.slow
def test_search_simplify_records_a_child_run_one_threshold_and_a_sweep(tmp_path: Path) -> None:
    run_id = trained_run(tmp_path)
    tracker = Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")

    one = run_cli(["simplify", run_id, "--threshold", "0.4", "--layers", "1,2", "--fine-tune-epochs", "1",
                   "--device", "cpu"], cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert "S=0.4:" in one.stdout and "Simplified 8-16-16 at S=0.4" in one.stdout
    (child,) = [r for r in tracker.children(run_id) if r.data.tags.get("phase") == "simplify"]
    assert child.info.status == "FINISHED" and child.data.params["layers"] == "1,2"
    assert child.data.metrics["free_weights_after"] < child.data.metrics["free_weights"]
    assert "tuned_acc_s0.4" in child.data.metrics
    artifacts = {a.path for a in tracker.client.list_artifacts(child.info.run_id)}
    assert {"model", "pictures", "simplify.csv"} <= artifacts
    pictures = {a.path for a in tracker.client.list_artifacts(child.info.run_id, "pictures")}
    assert "pictures/kernels_s0.4_layer1.png" in pictures and "pictures/kernels_s0.4_layer3.png" not in pictures

    sweep = run_cli(["simplify", run_id, "--sweep", "0.4,0.99", "--fine-tune-epochs", "1", "--device", "cpu"],
                    cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    assert "Simplification sweep" in sweep.stdout and "control" in sweep.stdout
    (swept,) = [r for r in tracker.children(run_id) if r.data.tags.get("phase") == "simplify"
                and r.info.run_id != child.info.run_id]
    assert {"tuned_acc_control", "tuned_acc_s0.99", "tuned_acc_s0.4"} <= set(swept.data.metrics)
    pictures = {a.path for a in tracker.client.list_artifacts(swept.info.run_id, "pictures")}
    assert "pictures/simplify_sweep.png" in pictures
    assert "model" not in {a.path for a in tracker.client.list_artifacts(swept.info.run_id)}

    for args, message in [
        (["--threshold", "1.5"], "threshold 1.5 must be a symmetry score in (0, 1]"),
        (["--sweep", "0.9,x"], "'x' is not a number"),
        (["--threshold", "0.9", "--sweep"], "not both"),
        (["--layers", "0"], "'0' is not a layer number"),
        (["--layers", "4"], "has conv layers 1..3"),
    ]:
        failed = run_cli(["simplify", run_id, *args, "--device", "cpu"], cwd=tmp_path)
        assert failed.returncode == 2 and message in failed.stderr, (args, failed.stderr)
        assert "Traceback" not in failed.stderr
